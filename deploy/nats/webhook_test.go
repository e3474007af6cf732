package nats

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/skeinrun/skein/pkg/trigger"
)

// TestWebhookUnderRoles: a webhook trigger runs under the shipped roles.
// The submitter creates it; a POST to the coordinator's webhook is
// recorded on the notification stream with the coordinator's rights
// only, and starts the job.
func TestWebhookUnderRoles(t *testing.T) {
	s := startServer(t, "", "-p", "default", "a")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const token = "roles-webhook-token-0123456789"
	co := start(t, append(s.roleEnv("a", "coordinator"), "SKEIN_WEBHOOK_TOKEN="+token), "coordinator", "--log-level", "debug", "--webhook-listen", addr)
	waitFor(t, co, "coordinator serving")
	rt := start(t, s.roleEnv("a", "runtime"), "runtime", "--slots", "2")
	sub := s.roleEnv("a", "submitter")
	def := `{"name":"echo","source":{"webhook":"in"},"job":{"kind":"call","function":"echo","param":"x"}}`
	if code, out, errOut := run(t, sub, "submit", "trigger", "create", "--def", def); code != 0 {
		t.Fatalf("trigger create: exit %d %s %s", code, out, errOut)
	}
	waitFor(t, co, "trigger source open")
	body := `{"hello":"hook"}`
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+trigger.WebhookPath+"in", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: status %d, want 200", resp.StatusCode)
	}
	// A JSON webhook event's id is its body's hash.
	h := sha256.Sum256([]byte(body))
	checkJob(t, sub, (&trigger.Def{Name: "echo"}).JobID([]string{"b-" + hex.EncodeToString(h[:16])}), "hook")
	for _, p := range []*proc{co, rt} {
		if o := p.out.String(); strings.Contains(strings.ToLower(o), "permission") {
			t.Errorf("%s met a permission violation:\n%s", p.cmd.Path, o)
		}
	}
}
