package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/client"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// Three coordinators get the same event at once (a trigger source that
// redelivered it): each submits the job with the id derived from the
// event, and exactly one job starts; the others, and a later
// resubmission, are told it exists.
func TestSubmitOnceAcrossCoordinators(t *testing.T) {
	eachBus(t, func(t *testing.T, tb *testBus) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		startRuntime(t, tb.connect(t, "runtime"), 4)
		var cs []*coordinator.Coordinator
		for i := range 3 {
			c, _ := joinCoordinator(t, tb.connect(t, fmt.Sprintf("coordinator-%d", i)), coordinator.Config{})
			cs = append(cs, c)
		}
		cl := client.New(tb.connect(t, "submitter"))
		const jobs = 10
		for k := range jobs {
			id := fmt.Sprintf("once-%d-%d", k, time.Now().UnixNano()%1e6)
			spec := wire.JobSpec{ID: id, Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(fmt.Sprintf("[%d,%d]", k, k+1)), ExtraParams: wire.Value(`{"y":1}`)}
			var wg sync.WaitGroup
			errs := make([]error, len(cs))
			for i, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := spec
					got, err := c.SubmitOnce(ctx, &s)
					if got != id {
						err = fmt.Errorf("id %q, want %q (err %v)", got, id, err)
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, coordinator.ErrJobExists):
					t.Fatalf("job %s, coordinator %d: %v", id, i, err)
				}
			}
			if won != 1 {
				t.Fatalf("job %s: %d coordinators started it, want 1 (%v)", id, won, errs)
			}
			res, st, err := cl.Run(ctx, &wire.JobSpec{ID: "", Kind: wire.JobCall, Function: "add", Data: wire.Value(`{"x":1,"y":1}`)})
			if err != nil || string(res) != "2" {
				t.Fatalf("another job meanwhile: %s %+v %v", res, st, err)
			}
			if _, err := cl.Wait(ctx, id); err != nil {
				t.Fatal(err)
			}
			out, err := cl.Result(ctx, id)
			if want := fmt.Sprintf("[%d,%d]", k+1, k+2); err != nil || string(out) != want {
				t.Fatalf("job %s: %s %v, want %s", id, out, err, want)
			}
			s := spec
			if _, err := cs[k%3].SubmitOnce(ctx, &s); !errors.Is(err, coordinator.ErrJobExists) {
				t.Fatalf("job %s submitted again after its end: %v, want ErrJobExists", id, err)
			}
		}
	})
}
