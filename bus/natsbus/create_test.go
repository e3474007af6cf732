package natsbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus/natsbus"
)

// Connections that start at the same moment on a namespace whose streams
// do not exist yet all connect: one creates each stream, the others find
// it (nats-server 2.9 may answer the later creations "subjects overlap").
func TestConcurrentFirstConnects(t *testing.T) {
	for name, bin := range natsServers(t) {
		t.Run(name, func(t *testing.T) {
			p := startNATSProcess(t, bin)
			url := p.URL()
			for round := range 3 {
				prefix := fmt.Sprintf("race%d", round)
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						b, err := natsbus.Connect(ctx, url, natsbus.Options{Prefix: prefix})
						if err != nil {
							errs <- err
							return
						}
						_ = b.Close()
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Errorf("round %d: %v", round, err)
				}
			}
		})
	}
}
