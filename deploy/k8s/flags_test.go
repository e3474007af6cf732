package k8s

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainersRunRealPrograms checks that the Skein containers run
// programs of cmd/ with flags those programs accept (their -h lists
// them), and that the KEDA triggers name the stream and consumer that
// bus/natsbus, or the queue that bus/rabbitmq, gives the runtimes' pool.
func TestContainersRunRealPrograms(t *testing.T) {
	docs := load(t)
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", bin+"/", "github.com/skeinrun/skein/cmd/coordinator", "github.com/skeinrun/skein/cmd/runtime").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	help := map[string]string{}
	for _, p := range []string{"coordinator", "runtime"} {
		out, _ := exec.Command(filepath.Join(bin, p), "-h").CombinedOutput()
		help[p] = string(out)
	}
	pools := map[string]bool{}
	for _, d := range docs {
		if d.kind() != "Deployment" || !strings.HasPrefix(d.name(), "skein-") {
			continue
		}
		for _, c := range list(get(d.m, "spec", "template", "spec", "containers")) {
			cmd := list(get(c, "command"))
			if len(cmd) != 1 {
				t.Errorf("%s: command %v, want one program", d, cmd)
				continue
			}
			prog := filepath.Base(str(cmd[0]))
			h, ok := help[prog]
			if !ok || str(cmd[0]) != "/usr/local/bin/"+prog {
				t.Errorf("%s: command %v is not /usr/local/bin/coordinator or runtime", d, cmd)
				continue
			}
			args := list(get(c, "args"))
			for i, a := range args {
				s := str(a)
				if !strings.HasPrefix(s, "--") {
					if i == 0 || !strings.HasPrefix(str(args[i-1]), "--") {
						t.Errorf("%s: argument %q is not a flag value", d, s)
					}
					continue
				}
				name, _, _ := strings.Cut(strings.TrimPrefix(s, "--"), "=")
				if !strings.Contains(h, "\n  -"+name+" ") && !strings.Contains(h, "\n  -"+name+"\n") {
					t.Errorf("%s: %s has no flag --%s", d, prog, name)
				}
				if prog == "runtime" && name == "pool" && i+1 < len(args) {
					pools[str(args[i+1])] = true
				}
			}
		}
	}
	if len(pools) == 0 {
		t.Fatal("no runtime Deployment names its pool")
	}
	for _, d := range docs {
		if d.kind() != "ScaledObject" {
			continue
		}
		for _, tr := range list(get(d.m, "spec", "triggers")) {
			if str(get(tr, "type")) == "rabbitmq" {
				// bus/rabbitmq names a pool's work queue after the pool.
				if q := str(get(tr, "metadata", "queueName")); !pools[q] {
					t.Errorf("%s: queueName %q is not a runtime pool (%v)", d, q, pools)
				}
				continue
			}
			if str(get(tr, "type")) != "nats-jetstream" {
				continue
			}
			stream, consumer := str(get(tr, "metadata", "stream")), str(get(tr, "metadata", "consumer"))
			pool, ok := strings.CutPrefix(consumer, "q-")
			if stream != "SKEIN_TASKS" || !ok || !pools[pool] {
				t.Errorf("%s: stream %q consumer %q; bus/natsbus names them SKEIN_TASKS and q-<pool> (pools %v)", d, stream, consumer, pools)
			}
		}
	}
}
