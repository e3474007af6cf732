package cli_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/pkg/cli"
)

// TestCoordinatorLocalBackend runs the coordinator program with its own
// embedded NATS server and the local backend (runtimes in its process),
// and the seed jobs through it.
func TestCoordinatorLocalBackend(t *testing.T) {
	co := start(t, "coordinator", "--embedded-listen", "127.0.0.1:0", "--backend", "local", "--workers", "2")
	re := regexp.MustCompile(`embedded NATS server listening"? url=(nats://127\.0\.0\.1:\d+)`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(co.out.String()); m != nil && strings.Contains(co.out.String(), "coordinator serving") {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coordinator did not come up:\n%s", co.out.String())
		}
	}
	if !strings.Contains(co.out.String(), "backend=local") {
		t.Fatalf("coordinator does not say it uses the local backend:\n%s", co.out.String())
	}
	for _, j := range seedJobs {
		out, errOut, code := submit(t, append(j.args, "--bus", url)...)
		if code != 0 || out != j.want {
			t.Fatalf("%s: exit %d, stdout %q, want %q; stderr:\n%s", j.name, code, out, j.want, errOut)
		}
	}
}

func TestCoordinatorBackendUsage(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown", []string{"--backend", "kubernetes"}, nil, `--backend "kubernetes"`},
		{"openwhisk without key", []string{"--backend", "openwhisk", "--ow-image", "img"}, []string{"SKEIN_OW_APIHOST=http://127.0.0.1:1"}, "SKEIN_OW_API_KEY"},
		{"openwhisk without host", []string{"--backend", "openwhisk", "--ow-image", "img"}, []string{"SKEIN_OW_API_KEY=u:secret-key"}, "APIHost"},
		{"openwhisk without image", []string{"--backend", "openwhisk"}, []string{"SKEIN_OW_APIHOST=http://127.0.0.1:1", "SKEIN_OW_API_KEY=u:secret-key"}, "Image"},
		{"job backlog 0", []string{"--job-backlog", "0"}, nil, "--job-backlog 0: want a positive number of tasks, or -1 for no bound"},
		{"job backlog -2", []string{"--job-backlog", "-2"}, nil, "--job-backlog -2: want a positive number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, "coordinator"), append([]string{"--embedded-listen", "127.0.0.1:0"}, c.args...)...)
			cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, c.env...)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != cli.ExitUsage || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, want %d naming %q:\n%s", err, cli.ExitUsage, c.want, out)
			}
			if strings.Contains(string(out), "secret-key") {
				t.Fatalf("the API key is in the output:\n%s", out)
			}
		})
	}
}

// A malformed SKEIN_GC_FLOOR stops a service with a usage error that
// names it, before it connects anywhere.
func TestServiceGCFloorUsage(t *testing.T) {
	for _, prog := range [][]string{{"coordinator", "--embedded-listen", "127.0.0.1:0"}, {"runtime", "--bus", "nats://127.0.0.1:1"}} {
		t.Run(prog[0], func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, prog[0]), prog[1:]...)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "SKEIN_GC_FLOOR=64MB"}
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != cli.ExitUsage || !strings.Contains(string(out), `SKEIN_GC_FLOOR: "64MB": want a byte count such as 64MiB, or 0`) {
				t.Fatalf("exit %v, want %d naming SKEIN_GC_FLOOR:\n%s", err, cli.ExitUsage, out)
			}
		})
	}
}
