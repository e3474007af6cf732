package k8s

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestProbes checks that every Skein container serves --http on a public
// address (with --http-public, or the program refuses it) on a declared
// port named http, and that its liveness probe asks /healthz and its
// readiness probe /readyz on that port.
func TestProbes(t *testing.T) {
	for _, d := range load(t) {
		if d.kind() != "Deployment" || !strings.HasPrefix(d.name(), "skein-") {
			continue
		}
		for _, c := range list(get(d.m, "spec", "template", "spec", "containers")) {
			var addr string
			public := false
			args := list(get(c, "args"))
			for i, a := range args {
				switch str(a) {
				case "--http":
					if i+1 < len(args) {
						addr = str(args[i+1])
					}
				case "--http-public":
					public = true
				}
			}
			if addr == "" {
				t.Errorf("%s: no --http: the probes have nothing to ask", d)
				continue
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: --http %q: %v", d, addr, err)
				continue
			}
			if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && !public {
				t.Errorf("%s: --http %s is not loopback and there is no --http-public: the program refuses it", d, addr)
			}
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				t.Errorf("%s: --http %s is loopback: the kubelet cannot reach it", d, addr)
			}
			declared := false
			for _, p := range list(get(c, "ports")) {
				if str(get(p, "name")) == "http" && strconv.Itoa(get(p, "containerPort").(int)) == port {
					declared = true
				}
			}
			if !declared {
				t.Errorf("%s: no container port named http = %s", d, port)
			}
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if got := str(get(c, probe, "httpGet", "path")); got != path {
					t.Errorf("%s: %s path %q, want %s", d, probe, got, path)
				}
				if p := get(c, probe, "httpGet", "port"); p != "http" && strconv.Itoa(asInt(p)) != port {
					t.Errorf("%s: %s port %v, want http (%s)", d, probe, p, port)
				}
			}
		}
	}
}

func asInt(v any) int { n, _ := v.(int); return n }

// TestKEDAPrometheus checks the Prometheus scaler example: it queries a
// metric the coordinator exports (pkg/metrics), for a pool the runtimes
// pull from.
func TestKEDAPrometheus(t *testing.T) {
	src, err := os.ReadFile("../../pkg/metrics/coordinator.go")
	if err != nil {
		t.Fatal(err)
	}
	docs := load(t)
	pools := map[string]bool{}
	for _, d := range docs {
		if d.name() != "skein-runtime" || d.kind() != "Deployment" {
			continue
		}
		for _, c := range list(get(d.m, "spec", "template", "spec", "containers")) {
			a := list(get(c, "args"))
			for i := range a {
				if str(a[i]) == "--pool" && i+1 < len(a) {
					pools[str(a[i+1])] = true
				}
			}
		}
	}
	q := regexp.MustCompile(`^max\((skein_[a-z_]+)\{pool="([^"]+)"\}\)$`)
	found := 0
	for _, d := range docs {
		if d.kind() != "ScaledObject" {
			continue
		}
		for _, tr := range list(get(d.m, "spec", "triggers")) {
			if str(get(tr, "type")) != "prometheus" {
				continue
			}
			found++
			m := q.FindStringSubmatch(str(get(tr, "metadata", "query")))
			if m == nil {
				t.Errorf("%s: query %q is not max(skein_…{pool=\"…\"})", d, get(tr, "metadata", "query"))
				continue
			}
			if !strings.Contains(string(src), `"`+m[1]+`"`) {
				t.Errorf("%s: pkg/metrics exports no %s", d, m[1])
			}
			if !pools[m[2]] {
				t.Errorf("%s: pool %q is not a runtime pool (%v)", d, m[2], pools)
			}
		}
	}
	if found == 0 {
		t.Error("no prometheus ScaledObject")
	}
}
