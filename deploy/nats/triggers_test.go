package nats

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skeinrun/skein/pkg/trigger"
)

// TestTriggerUnderRoles: a trigger runs under the shipped roles. The
// submitter creates it, a notifier publishes an event on a.notify.>, the
// coordinator (with its role's rights only) keeps it on the notification
// stream and starts the job. The notifier can publish nothing else and
// read nothing; a trigger cannot read the namespace's own subjects.
func TestTriggerUnderRoles(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a", "b")
	co := start(t, s.roleEnv("a", "coordinator"), "coordinator", "--log-level", "debug")
	waitFor(t, co, "coordinator serving")
	rt := start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "2")
	sub := s.roleEnv("a", "submitter")
	def := `{"name":"echo","source":{"nats":"a.notify.in"},"job":{"kind":"call","function":"echo","param":"x"}}`
	if code, out, errOut := run(t, sub, "submit", "trigger", "create", "--def", def); code != 0 {
		t.Fatalf("trigger create: exit %d %s %s", code, out, errOut)
	}
	for _, subj := range []string{"a.rpc.api.submit", "a.task.default.x", "b.notify.in", "a.notifyx"} {
		bad := strings.Replace(def, "a.notify.in", subj, 1)
		if code, _, errOut := run(t, sub, "submit", "trigger", "create", "--def", bad); code != 2 || !strings.Contains(errOut, "a.notify.") {
			t.Errorf("a trigger on %s: exit %d %s; want 2, refused", subj, code, errOut)
		}
	}
	// A second stage, chained to echo's jobs, with the coordinator's
	// rights only.
	chain := `{"name":"again","source":{"jobs":"trigger:echo"},"job":{"kind":"call","function":"echo","param":"x"}}`
	if code, out, errOut := run(t, sub, "submit", "trigger", "create", "--def", chain); code != 0 {
		t.Fatalf("trigger create: exit %d %s %s", code, out, errOut)
	}
	for deadline := time.Now().Add(20 * time.Second); strings.Count(co.out.String(), "trigger source open") < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the triggers' sources did not open:\n%s", co.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	n := s.connect(t, "a", "notifier")
	m := nats.NewMsg("a.notify.in")
	m.Header.Set("Nats-Msg-Id", "m1")
	m.Data = []byte(`{"hello":"world"}`)
	if err := n.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := n.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	checkResult(t, sub, "m1", "world")
	echoJob := (&trigger.Def{Name: "echo"}).JobID([]string{"m1"})
	checkJob(t, sub, (&trigger.Def{Name: "again"}).JobID([]string{echoJob + ".done"}), "world")
	// Deleted (its consumer goes) and made again (a new one, from the
	// new record on): it runs what is published after.
	if code, out, errOut := run(t, sub, "submit", "trigger", "delete", "echo"); code != 0 {
		t.Fatalf("trigger delete: exit %d %s %s", code, out, errOut)
	}
	waitFor(t, co, "trigger deleted")
	if code, out, errOut := run(t, sub, "submit", "trigger", "create", "--def", def); code != 0 {
		t.Fatalf("trigger create again: exit %d %s %s", code, out, errOut)
	}
	for deadline := time.Now().Add(20 * time.Second); strings.Count(co.out.String(), "trigger source open") < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the trigger made again did not open its source:\n%s", co.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m = nats.NewMsg("a.notify.in")
	m.Header.Set("Nats-Msg-Id", "m2")
	m.Data = []byte(`{"hello":"again"}`)
	if err := n.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	checkResult(t, sub, "m2", "again")
	// The notifier: nothing but a.notify.>.
	for _, subj := range []string{"a.rpc.api.submit", "a.task.default.x", "a.ev.job.x.spec", "a.ev.trigger.x", "b.notify.in", "$JS.API.STREAM.INFO.A_NOTIFY"} {
		if err := n.nc.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		n.expectDenied(t, subj)
	}
	for _, subj := range []string{"a.notify.>", ">", "_INBOX.>"} {
		if _, err := n.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		n.expectDenied(t, subj)
	}
	for _, p := range []*proc{co, rt} {
		if o := p.out.String(); strings.Contains(strings.ToLower(o), "permission") {
			t.Errorf("%s met a permission violation:\n%s", p.cmd.Path, o)
		}
	}
}

// checkResult waits for the result of trigger echo's job for message id
// and checks that it echoes hello.
func checkResult(t *testing.T, env []string, id, hello string) {
	t.Helper()
	checkJob(t, env, (&trigger.Def{Name: "echo"}).JobID([]string{id}), hello)
}

// checkJob waits for job's result and checks that it echoes hello.
func checkJob(t *testing.T, env []string, job, hello string) {
	t.Helper()
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, o, _ := run(t, env, "submit", "result", job)
		if code == 0 {
			out = o
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trigger's job %s never gave a result (exit %d)", job, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["hello"] != hello {
		t.Fatalf("result %q: %v, want hello %q", out, err, hello)
	}
}
