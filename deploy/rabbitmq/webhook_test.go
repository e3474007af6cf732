package rabbitmq

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/trigger"
)

// TestWebhookUnderRoles: a webhook trigger runs under skein-users.sh's
// roles. The submitter creates it; a POST to the coordinator's webhook is
// recorded in the trigger's queue with the coordinator's rights, and
// starts the job.
func TestWebhookUnderRoles(t *testing.T) {
	a := makeTenant(t, "w")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const token = "roles-webhook-token-0123456789"
	co := start(t, append(a.env("coordinator"), "SKEIN_WEBHOOK_TOKEN="+token), "coordinator", "--log-level", "debug", "--webhook-listen", addr)
	waitFor(t, co, "coordinator serving")
	start(t, a.env("runtime"), "runtime", "--slots", "2")
	def := `{"name":"echo","source":{"webhook":"in"},"job":{"kind":"call","function":"echo","param":"x"}}`
	if code, out, errOut := run(t, a.env("submitter"), "submit", "trigger", "create", "--def", def); code != 0 {
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
	id := (&trigger.Def{Name: "echo"}).JobID([]string{"b-" + hex.EncodeToString(h[:16])})
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
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["hello"] != "hook" {
		t.Fatalf("result %q: %v", out, err)
	}
}
