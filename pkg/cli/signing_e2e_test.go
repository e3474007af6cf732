package cli_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/wire"
)

// writeSigningKeys writes an Ed25519 key pair as the PEM files openssl
// makes and returns their paths.
func writeSigningKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	priv = filepath.Join(dir, "sign.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if der, err = x509.MarshalPKIXPublicKey(pk); err != nil {
		t.Fatal(err)
	}
	pub = filepath.Join(dir, "verify.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// TestSignedMessages: with coordinator --sign-key and runtime and submit
// --verify-key, jobs run as before; a task a bare bus client publishes is
// refused with a logged reason even on a runtime that runs commands, and
// a forged end record does not end a waiting submit.
func TestSignedMessages(t *testing.T) {
	for _, bk := range buses {
		t.Run(bk.name, func(t *testing.T) {
			url := namespaced(t, testenv.Require(t, bk.env))
			priv, pub := writeSigningKeys(t)
			env := []string{"SKEIN_SIGN_KEY=" + priv, "SKEIN_VERIFY_KEY=" + pub}
			rts := clusterEnv(t, url, 1, env, "--hosts", "go,py,cmd")
			verify := []string{"--bus", url, "--verify-key", pub}

			out, errOut, code := submit(t, append([]string{"mapreduce", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--reduce-function", "sum"}, verify...)...)
			if code != 0 || strings.TrimSpace(out) != "9" {
				t.Fatalf("a signed mapreduce: exit %d, %q: %s", code, out, errOut)
			}
			// The reducer submit runs itself checks its task and feed too.
			out, errOut, code = submit(t, append([]string{"mapreduce", "--function", "add", "--iterdata", "[1,2,3]", "--extra-params", `{"y":1}`, "--reduce-function", "sum", "--reducer-wait-local"}, verify...)...)
			if code != 0 || strings.TrimSpace(out) != "9" {
				t.Fatalf("a signed mapreduce with the reducer in submit: exit %d, %q: %s", code, out, errOut)
			}

			// A forged task: refused, never run.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b, err := dial.Open(ctx, url, dial.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			marker := filepath.Join(t.TempDir(), "pwned")
			data, err := wire.Encode(wire.KindTask, wire.Task{Job: "jforged2", Attempt: 1, Kind: wire.TaskMap, Function: fmt.Sprintf("cmd:sh -c 'touch %s'", marker)})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Enqueue(ctx, "default", bus.Message{Data: data, Key: "jforged2"}); err != nil {
				t.Fatal(err)
			}
			waitOutput(t, rts[0], "refusing a task the coordinator did not sign", 20*time.Second)
			if _, err := os.Stat(marker); !os.IsNotExist(err) {
				t.Fatalf("the forged task ran: %v", err)
			}

			// A forged end record while the job runs: the waiting submit
			// ignores it and prints the real result.
			type res struct {
				out, errOut string
				code        int
			}
			done := make(chan res, 1)
			go func() {
				o, e, c := submit(t, append([]string{"map", "--function", "sleep", "--iterdata", `[{"x":1.5,"value":"real"}]`, "--log-level", "info"}, verify...)...)
				done <- res{o, e, c}
			}()
			notes, err := b.Listen(ctx, "progress.*")
			if err != nil {
				t.Fatal(err)
			}
			var id string
			for m := range notes {
				id = strings.TrimPrefix(m.Subject, "progress.")
				break
			}
			forged, err := wire.Encode(wire.KindEnd, wire.End{Status: wire.JobStatus{ID: id, State: wire.StateDone, Total: 1, Done: 1, Ended: time.Now().UnixNano()}})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, wire.JobEndSubject(id), bus.Message{Data: forged}); err != nil {
				t.Fatal(err)
			}
			r := <-done
			var got []string
			if r.code != 0 || json.Unmarshal([]byte(r.out), &got) != nil || len(got) != 1 || got[0] != "real" {
				t.Fatalf("the job under a forged end record: exit %d, %q: %s", r.code, r.out, r.errOut)
			}
			if !strings.Contains(r.errOut, "did not sign") {
				t.Fatalf("submit did not log the forged end record it ignored:\n%s", r.errOut)
			}
		})
	}
}
