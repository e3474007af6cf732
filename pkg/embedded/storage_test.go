package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/wire"
)

// The task stream of an embedded installation lives in memory, bounded by
// the coordinator's job backlog; the events and the job log, which grow
// with a job's tasks, stay on files. With no backlog bound the tasks stay
// on files too.
func TestTaskStreamStorage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backlog int
		tasks   jetstream.StorageType
	}{
		{"bounded backlog", 0, jetstream.MemoryStorage},
		{"no backlog bound", -1, jetstream.FileStorage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := Start(ctx, Config{Workers: 2, Coordinator: coordinator.Config{JobBacklog: tc.backlog}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			spec := wire.JobSpec{Kind: wire.JobMap, Function: "add", Iterdata: wire.Value(`[1,2,3]`), ExtraParams: wire.Value(`{"y":1}`)}
			res, st, err := c.Client.Run(ctx, &spec)
			if err != nil {
				t.Fatalf("run: %v (status %+v)", err, st)
			}
			if string(res) != `[2,3,4]` {
				t.Fatalf("got %s, want [2,3,4]", res)
			}
			nc, err := nats.Connect("", nats.InProcessServer(c.Server.Server()))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			for stream, want := range map[string]jetstream.StorageType{"SKEIN_TASKS": tc.tasks, "SKEIN_EVENTS": jetstream.FileStorage} {
				s, err := js.Stream(ctx, stream)
				if err != nil {
					t.Fatalf("%s: %v", stream, err)
				}
				if got := s.CachedInfo().Config.Storage; got != want {
					t.Errorf("%s is stored on %v, want %v", stream, got, want)
				}
			}
		})
	}
}
