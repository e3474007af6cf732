package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type obj = map[string]any

type doc struct {
	file string
	m    obj
}

func (d doc) kind() string { s, _ := d.m["kind"].(string); return s }
func (d doc) name() string { return str(get(d.m, "metadata", "name")) }
func (d doc) String() string {
	return fmt.Sprintf("%s: %s/%s", d.file, d.kind(), d.name())
}

func get(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(obj)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

func str(v any) string { s, _ := v.(string); return s }
func list(v any) []any { l, _ := v.([]any); return l }

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// load parses every manifest under the directory (not kustomization.yaml).
func load(t *testing.T) []doc {
	t.Helper()
	var docs []doc
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") || filepath.Base(path) == "kustomization.yaml" {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for i := 0; ; i++ {
			var m obj
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s document %d: %w", path, i, err)
			}
			if m == nil {
				continue
			}
			docs = append(docs, doc{file: path, m: m})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) < 10 {
		t.Fatalf("only %d manifests found", len(docs))
	}
	return docs
}

func index(docs []doc) map[string]doc {
	idx := map[string]doc{}
	for _, d := range docs {
		idx[d.kind()+"/"+d.name()] = d
	}
	return idx
}

func TestManifests(t *testing.T) {
	docs := load(t)
	idx := index(docs)
	seen := map[string]string{}
	for _, d := range docs {
		t.Run(d.String(), func(t *testing.T) {
			if str(d.m["apiVersion"]) == "" || d.kind() == "" || d.name() == "" {
				t.Fatalf("apiVersion, kind and metadata.name are required: %v", d.m)
			}
			if !dns1123.MatchString(d.name()) || len(d.name()) > 253 {
				t.Errorf("metadata.name %q is not a DNS-1123 name", d.name())
			}
			if d.kind() != "Namespace" && str(get(d.m, "metadata", "namespace")) != "skein" {
				t.Errorf("metadata.namespace is %q, want skein", get(d.m, "metadata", "namespace"))
			}
			key := d.kind() + "/" + d.name()
			// The RabbitMQ variant replaces keda-nats.yaml's objects.
			if prev, dup := seen[key]; dup && filepath.Dir(prev) == filepath.Dir(d.file) {
				t.Errorf("%s also defined in %s", key, prev)
			}
			seen[key] = d.file
			switch d.kind() {
			case "Deployment", "StatefulSet":
				checkWorkload(t, d, idx)
			case "Service":
				checkService(t, d, docs)
			case "ScaledObject":
				checkScaledObject(t, d, idx)
			case "TriggerAuthentication":
				checkTriggerAuth(t, d, idx)
			case "ConfigMap":
				for k, v := range get(d.m, "data").(obj) {
					if strings.HasSuffix(k, ".yaml") {
						var x any
						if err := yaml.Unmarshal([]byte(str(v)), &x); err != nil {
							t.Errorf("data.%s is not YAML: %v", k, err)
						}
					}
				}
			case "PodDisruptionBudget":
				checkPDB(t, d, docs)
			case "Secret":
				if get(d.m, "stringData") == nil && get(d.m, "data") == nil {
					t.Error("Secret without data")
				}
			case "Namespace":
			default:
				t.Errorf("unexpected kind %s", d.kind())
			}
		})
	}
}

func checkWorkload(t *testing.T, d doc, idx map[string]doc) {
	if str(d.m["apiVersion"]) != "apps/v1" {
		t.Errorf("apiVersion %v, want apps/v1", d.m["apiVersion"])
	}
	sel, _ := get(d.m, "spec", "selector", "matchLabels").(obj)
	labels, _ := get(d.m, "spec", "template", "metadata", "labels").(obj)
	if len(sel) == 0 {
		t.Fatal("spec.selector.matchLabels is empty")
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("selector %s=%v does not match template labels %v", k, v, labels)
		}
	}
	spec, _ := get(d.m, "spec", "template", "spec").(obj)
	volumes := map[string]bool{}
	for _, v := range list(spec["volumes"]) {
		volumes[str(get(v, "name"))] = true
		if cm := str(get(v, "configMap", "name")); cm != "" {
			if _, ok := idx["ConfigMap/"+cm]; !ok {
				t.Errorf("volume uses ConfigMap %q, which no manifest defines", cm)
			}
		}
	}
	if d.kind() == "StatefulSet" {
		svc := str(get(d.m, "spec", "serviceName"))
		if _, ok := idx["Service/"+svc]; !ok {
			t.Errorf("serviceName %q is not a Service here", svc)
		}
		for _, v := range list(get(d.m, "spec", "volumeClaimTemplates")) {
			volumes[str(get(v, "metadata", "name"))] = true
			if str(get(v, "spec", "resources", "requests", "storage")) == "" {
				t.Errorf("volumeClaimTemplate %v has no storage request", get(v, "metadata", "name"))
			}
		}
	}
	containers := list(spec["containers"])
	if len(containers) == 0 {
		t.Fatal("no containers")
	}
	for _, c := range containers {
		name, image := str(get(c, "name")), str(get(c, "image"))
		if name == "" || image == "" {
			t.Errorf("container without name or image: %v", c)
		}
		for _, p := range list(get(c, "ports")) {
			if n, ok := get(p, "containerPort").(int); !ok || n < 1 || n > 65535 {
				t.Errorf("container %s: bad containerPort %v", name, get(p, "containerPort"))
			}
		}
		for _, m := range list(get(c, "volumeMounts")) {
			if !volumes[str(get(m, "name"))] || str(get(m, "mountPath")) == "" {
				t.Errorf("container %s: volumeMount %v has no volume or path", name, m)
			}
		}
		for _, e := range list(get(c, "env")) {
			if str(get(e, "name")) == "" {
				t.Errorf("container %s: env without name", name)
			}
			if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
				checkSecretKey(t, idx, str(get(ref, "name")), str(get(ref, "key")), fmt.Sprintf("container %s env %s", name, get(e, "name")))
			}
		}
	}
}

// checkSecretKey checks a reference to a Secret key. Secrets other than
// the example (skein-nats) are created by hand as README.md says.
func checkSecretKey(t *testing.T, idx map[string]doc, name, key, where string) {
	t.Helper()
	if name == "" || key == "" {
		t.Errorf("%s: secret reference needs name and key", where)
		return
	}
	if name == "skein-nats" && key == "password" {
		return
	}
	s, ok := idx["Secret/"+name]
	if !ok {
		t.Errorf("%s: Secret %q is not in secret.example.yaml", where, name)
		return
	}
	if get(s.m, "stringData", key) == nil && get(s.m, "data", key) == nil {
		t.Errorf("%s: Secret %q has no key %q", where, name, key)
	}
}

func checkService(t *testing.T, d doc, docs []doc) {
	ports := list(get(d.m, "spec", "ports"))
	if len(ports) == 0 {
		t.Fatal("Service without ports")
	}
	for _, p := range ports {
		if n, ok := get(p, "port").(int); !ok || n < 1 || n > 65535 {
			t.Errorf("bad port %v", get(p, "port"))
		}
		if len(ports) > 1 && str(get(p, "name")) == "" {
			t.Errorf("a port of a multi-port Service has no name: %v", p)
		}
	}
	sel, _ := get(d.m, "spec", "selector").(obj)
	if len(sel) == 0 {
		t.Fatal("Service without selector")
	}
	for _, w := range docs {
		if w.kind() != "Deployment" && w.kind() != "StatefulSet" {
			continue
		}
		labels, _ := get(w.m, "spec", "template", "metadata", "labels").(obj)
		match := true
		for k, v := range sel {
			match = match && labels[k] == v
		}
		if match {
			return
		}
	}
	t.Errorf("selector %v matches no workload", sel)
}

// checkPDB checks a PodDisruptionBudget: policy/v1, one of minAvailable
// and maxUnavailable, a selector that matches the pods of one workload,
// and a budget that lets a drain go on (at least one pod may go) without
// taking every pod.
func checkPDB(t *testing.T, d doc, docs []doc) {
	if str(d.m["apiVersion"]) != "policy/v1" {
		t.Errorf("apiVersion %v, want policy/v1", d.m["apiVersion"])
	}
	minA, hasMin := get(d.m, "spec", "minAvailable").(int)
	maxU, hasMax := get(d.m, "spec", "maxUnavailable").(int)
	if hasMin == hasMax {
		t.Fatalf("want exactly one of spec.minAvailable and spec.maxUnavailable (as numbers): %v", get(d.m, "spec"))
	}
	sel, _ := get(d.m, "spec", "selector", "matchLabels").(obj)
	if len(sel) == 0 {
		t.Fatal("spec.selector.matchLabels is empty")
	}
	var matched []doc
	for _, w := range docs {
		if w.kind() != "Deployment" && w.kind() != "StatefulSet" {
			continue
		}
		labels, _ := get(w.m, "spec", "template", "metadata", "labels").(obj)
		match := true
		for k, v := range sel {
			match = match && labels[k] == v
		}
		if match {
			matched = append(matched, w)
		}
	}
	if len(matched) != 1 {
		t.Fatalf("selector %v matches %d workloads, want one", sel, len(matched))
	}
	replicas, ok := get(matched[0].m, "spec", "replicas").(int)
	if !ok {
		t.Fatalf("%s has no spec.replicas: a budget needs a fixed count", matched[0])
	}
	switch {
	case hasMin && (minA < 1 || minA >= replicas):
		t.Errorf("minAvailable %d of %d replicas of %s: want 1 to %d, or no drain can evict a pod", minA, replicas, matched[0], replicas-1)
	case hasMax && (maxU < 1 || maxU >= replicas):
		t.Errorf("maxUnavailable %d of %d replicas of %s: want 1 to %d", maxU, replicas, matched[0], replicas-1)
	}
}

// TestCoordinatorsReplicated checks what docs/deploy.md promises of the
// coordinators: three replicas, updated one at a time, and a disruption
// budget that keeps two serving.
func TestCoordinatorsReplicated(t *testing.T) {
	idx := index(load(t))
	dep, ok := idx["Deployment/skein-coordinator"]
	if !ok {
		t.Fatal("no Deployment skein-coordinator")
	}
	if r, _ := get(dep.m, "spec", "replicas").(int); r != 3 {
		t.Errorf("coordinator replicas %v, want 3", get(dep.m, "spec", "replicas"))
	}
	if typ := str(get(dep.m, "spec", "strategy", "type")); typ != "RollingUpdate" {
		t.Errorf("coordinator update strategy %q, want RollingUpdate (the others serve while one is replaced)", typ)
	}
	if u, _ := get(dep.m, "spec", "strategy", "rollingUpdate", "maxUnavailable").(int); u != 1 {
		t.Errorf("coordinator rollingUpdate.maxUnavailable %v, want 1", get(dep.m, "spec", "strategy", "rollingUpdate", "maxUnavailable"))
	}
	pdb, ok := idx["PodDisruptionBudget/skein-coordinator"]
	if !ok {
		t.Fatal("no PodDisruptionBudget skein-coordinator")
	}
	minA, hasMin := get(pdb.m, "spec", "minAvailable").(int)
	maxU, hasMax := get(pdb.m, "spec", "maxUnavailable").(int)
	if !(hasMin && minA == 2) && !(hasMax && maxU == 1) {
		t.Errorf("coordinator budget %v, want minAvailable 2 or maxUnavailable 1", get(pdb.m, "spec"))
	}
	sel, _ := get(pdb.m, "spec", "selector", "matchLabels").(obj)
	labels, _ := get(dep.m, "spec", "template", "metadata", "labels").(obj)
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("budget selector %s=%v does not select the coordinators (%v)", k, v, labels)
		}
	}
}

func checkScaledObject(t *testing.T, d doc, idx map[string]doc) {
	if str(d.m["apiVersion"]) != "keda.sh/v1alpha1" {
		t.Errorf("apiVersion %v", d.m["apiVersion"])
	}
	target := str(get(d.m, "spec", "scaleTargetRef", "name"))
	kind := str(get(d.m, "spec", "scaleTargetRef", "kind"))
	if kind == "" {
		kind = "Deployment"
	}
	if _, ok := idx[kind+"/"+target]; !ok {
		t.Errorf("scaleTargetRef %s/%s is not defined", kind, target)
	}
	minR, _ := get(d.m, "spec", "minReplicaCount").(int)
	maxR, _ := get(d.m, "spec", "maxReplicaCount").(int)
	if maxR < 1 || minR > maxR {
		t.Errorf("minReplicaCount %d, maxReplicaCount %d", minR, maxR)
	}
	triggers := list(get(d.m, "spec", "triggers"))
	if len(triggers) == 0 {
		t.Fatal("no triggers")
	}
	for _, tr := range triggers {
		typ := str(get(tr, "type"))
		md, _ := get(tr, "metadata").(obj)
		authParams := map[string]bool{}
		if ref := str(get(tr, "authenticationRef", "name")); ref != "" {
			ta, ok := idx["TriggerAuthentication/"+ref]
			if !ok {
				t.Errorf("authenticationRef %q is not defined", ref)
			}
			for _, s := range list(get(ta.m, "spec", "secretTargetRef")) {
				authParams[str(get(s, "parameter"))] = true
			}
		}
		need := map[string][]string{
			"nats-jetstream": {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"},
			"rabbitmq":       {"host", "queueName", "mode", "value"},
			"prometheus":     {"serverAddress", "query", "threshold"},
		}[typ]
		if need == nil {
			t.Errorf("trigger type %q is not one Skein uses", typ)
		}
		for _, k := range need {
			if str(md[k]) == "" && !authParams[k] {
				t.Errorf("trigger %s: %s is neither in metadata nor in the TriggerAuthentication", typ, k)
			}
		}
		for k, v := range md {
			if _, ok := v.(string); !ok {
				t.Errorf("trigger %s: metadata.%s must be a string, is %T", typ, k, v)
			}
		}
	}
}

func checkTriggerAuth(t *testing.T, d doc, idx map[string]doc) {
	refs := list(get(d.m, "spec", "secretTargetRef"))
	if len(refs) == 0 {
		t.Fatal("TriggerAuthentication without secretTargetRef")
	}
	for _, r := range refs {
		if str(get(r, "parameter")) == "" {
			t.Errorf("secretTargetRef without parameter: %v", r)
		}
		checkSecretKey(t, idx, str(get(r, "name")), str(get(r, "key")), "secretTargetRef "+str(get(r, "parameter")))
	}
}

func TestKustomization(t *testing.T) {
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.yaml")
	want := []string{}
	for _, f := range files {
		if f != "kustomization.yaml" && f != "secret.example.yaml" {
			want = append(want, f)
		}
	}
	sort.Strings(want)
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("kustomization resources %v, want every manifest but the secret example: %v", got, want)
	}
}
