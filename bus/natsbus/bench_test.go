package natsbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/natsbus"
)

// BenchmarkConsumeAck measures one task's way through an embedded
// server's queue: consumed with prefetch 64 and acked, one ack after the
// other as a runtime's publisher settles a group.
func BenchmarkConsumeAck(b *testing.B) { benchConsumeAck(b, false) }

// BenchmarkConsumeAckConcurrent acks every delivery on its own goroutine,
// as a runtime that settles a group's deliveries at once would.
func BenchmarkConsumeAckConcurrent(b *testing.B) { benchConsumeAck(b, true) }

func benchConsumeAck(b *testing.B, concurrent bool) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nb, err := e.Connect(ctx, natsbus.Options{MemoryStorage: true})
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	msgs := make([]bus.Message, b.N)
	for i := range msgs {
		msgs[i] = bus.Message{Key: "k", Data: []byte("task")}
	}
	if err := nb.Enqueue(ctx, "bench", msgs...); err != nil {
		b.Fatal(err)
	}
	ds, err := nb.Consume(ctx, "bench", bus.QueueOptions{Prefetch: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	for range b.N {
		d := <-ds
		if !concurrent {
			if err := d.Ack(ctx); err != nil {
				b.Fatal(err)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Ack(ctx); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}
