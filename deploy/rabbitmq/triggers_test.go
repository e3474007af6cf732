package rabbitmq

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/pkg/trigger"
)

// TestTriggerUnderRoles: a trigger runs under skein-users.sh's roles. The
// submitter creates it (its queue bound to the exchange <ns>.notify), a
// notifier publishes an event there, and the coordinator, with its
// role's rights, starts the job. The notifier may publish to nothing else
// and read nothing.
func TestTriggerUnderRoles(t *testing.T) {
	a := makeTenant(t, "t")
	co := start(t, a.env("coordinator"), "coordinator", "--log-level", "debug")
	waitFor(t, co, "coordinator serving")
	rt := start(t, a.env("runtime"), "runtime", "--slots", "2")
	queue, exchange := a.ns+".trigger-in", a.ns+".notify"
	def := fmt.Sprintf(`{"name":"echo","source":{"amqp":%q,"exchange":%q,"routing_key":"in"},"job":{"kind":"call","function":"echo","param":"x"}}`, queue, exchange)
	if code, out, errOut := run(t, a.env("submitter"), "submit", "trigger", "create", "--def", def); code != 0 {
		t.Fatalf("trigger create: exit %d %s %s", code, out, errOut)
	}
	waitFor(t, co, "trigger source open")

	n := a.dial(t, "notifier")
	ch, err := n.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(ctx, exchange, "in", false, false, amqp.Publishing{MessageId: "m1", Body: []byte(`{"hello":"world"}`)}); err != nil {
		t.Fatal(err)
	}
	id := (&trigger.Def{Name: "echo"}).JobID([]string{"m1"})
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, o, _ := run(t, a.env("submitter"), "submit", "result", id)
		if code == 0 {
			out = o
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trigger's job %s never gave a result (exit %d)", id, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["hello"] != "world" {
		t.Fatalf("result %q: %v", out, err)
	}
	// The notifier: nothing but publishing to <ns>.notify.
	for _, op := range []struct {
		what string
		op   func(ch *amqp.Channel) error
	}{
		{"publish to the default exchange (the trigger's queue)", publish("", queue)},
		{"publish to the default exchange (a task queue)", publish("", a.ns+".default")},
		{"publish an API request", publish(a.ns+".rpc", "api.submit")},
		{"publish on the event stream", publish(a.ns+".events", "job.x.spec")},
		{"consume the trigger's queue", consume(queue)},
		{"read the event stream", consume(a.ns + ".events")},
		{"declare a queue", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare("mine", false, true, false, false, nil)
			return err
		}},
	} {
		if !refused(t, n, op.op) {
			t.Errorf("the notifier may %s", op.what)
		}
	}
	for _, p := range []*proc{co, rt} {
		if o := p.out.String(); wasRefused(o) {
			t.Errorf("%s was refused something:\n%s", p.cmd.Path, o)
		}
	}
}
