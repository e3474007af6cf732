package nats

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTenantsApart: a submitter may create consumers on its namespace's
// end records, and nats-server 2.9 cannot restrict where a push consumer
// delivers. With one account for every namespace, a consumer of
// namespace a delivering to "b.bc.cancel" would reach namespace b's
// runtimes; with an account per namespace (skein-auth.sh) the subject is
// a's own, and nobody there listens.
func TestTenantsApart(t *testing.T) {
	s := startServer(t, "", "a", "b")
	s.createStreams(t, "a")
	s.createStreams(t, "b")
	rt := s.connect(t, "b", "runtime")
	heard, err := rt.nc.SubscribeSync("b.bc.cancel")
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c := s.connect(t, "a", "submitter")
	req := `{"stream_name":"A_EVENTS","config":{"name":"p1","deliver_subject":"b.bc.cancel","filter_subject":"a.ev.job.*.end","ack_policy":"none"}}`
	m, err := c.nc.Request("$JS.API.CONSUMER.CREATE.A_EVENTS.p1.a.ev.job.*.end", []byte(req), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Error     any  `json:"error"`
		PushBound bool `json:"push_bound"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil || info.Error != nil {
		t.Fatalf("push consumer not created: %s", m.Data)
	}
	// push_bound: the server sees a listener of the deliver subject.
	if info.PushBound || strings.Contains(string(m.Data), `"push_bound":true`) {
		t.Errorf("namespace a's consumer reaches a listener of b.bc.cancel: %s", m.Data)
	}
	if msg, err := heard.NextMsg(0); err == nil {
		t.Errorf("b's runtime heard %q from namespace a", msg.Data)
	}
}
