// Package netns builds a small multi-host network on one machine for
// tests: one Linux network namespace per test host, all joined by veth
// pairs to a bridge that lives in a namespace of its own, on the private
// subnet 10.200.<n>.0/24. Nothing touches the root namespace's network.
// Hosts reach each other by address; Cut takes one host's link down (as
// if its cable were pulled) and Restore brings it back.
//
// It needs root and iproute2 (installed with apt-get when missing).
// Typical use, for the lead's multi-host test:
//
//	n, err := netns.New(ctx, "nats", "coord", "rt1", "rt2")
//	defer n.Close()
//	srv := n.Host("nats").Command(ctx, "nats-server", "-a", n.Host("nats").Addr, "-js")
//	...
//	n.Cut(ctx, "rt1") // mid-job
//
// Close kills every process still running in the namespaces and deletes
// them; New first deletes namespaces left by earlier runs whose process
// is gone.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Host is one test host: a network namespace with eth0 on the subnet.
type Host struct {
	Name  string // as given to New
	NS    string // the namespace's name (ip netns)
	Addr  string // IPv4 address on the subnet, e.g. 10.200.7.2
	swIf  string // its veth end in the switch namespace
	owner *Net
}

// Command returns a command that runs name with args inside the host's
// namespace (through "ip netns exec").
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Net is a set of hosts on one bridge.
type Net struct {
	Subnet string // e.g. 10.200.7.0/24
	prefix string
	sw     string
	hosts  []*Host
	byName map[string]*Host
	once   sync.Once
}

const nsPrefix = "skein-"

// Available reports why the harness cannot run here, or nil: it needs root
// and the ip command (which it installs with apt-get when missing).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netns: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err == nil {
		return nil
	}
	out, err := exec.Command("sh", "-c", "apt-get install -y iproute2 >&2 || (apt-get update >&2 && apt-get install -y iproute2 >&2)").CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: installing iproute2: %v: %s", err, out)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netns: ip not found after installing iproute2: %w", err)
	}
	return nil
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New creates one namespace per name (at most 250), a switch namespace
// with a bridge, and a veth pair from each host's eth0 to the bridge.
// Host i gets address 10.200.<n>.<i+2>, where n is chosen per process.
// On error everything created so far is removed.
func New(ctx context.Context, names ...string) (*Net, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if len(names) == 0 || len(names) > 250 {
		return nil, fmt.Errorf("netns: %d hosts, want 1 to 250", len(names))
	}
	removeStale(ctx)
	pid := os.Getpid()
	third := pid%200 + 20
	n := &Net{
		Subnet: fmt.Sprintf("10.200.%d.0/24", third),
		prefix: fmt.Sprintf("%s%d-", nsPrefix, pid),
		byName: map[string]*Host{},
	}
	// Several Nets in one process get distinct prefixes.
	for i := 0; ; i++ {
		p := fmt.Sprintf("%s%d-%d-", nsPrefix, pid, i)
		if _, err := os.Stat("/run/netns/" + p + "sw"); os.IsNotExist(err) {
			n.prefix = p
			break
		}
	}
	n.sw = n.prefix + "sw"
	fail := func(err error) (*Net, error) { n.Close(); return nil, err }
	if err := ip(ctx, "netns", "add", n.sw); err != nil {
		return fail(err)
	}
	for _, args := range [][]string{
		{"-n", n.sw, "link", "set", "lo", "up"},
		{"-n", n.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", n.sw, "link", "set", "br0", "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			return fail(err)
		}
	}
	for i, name := range names {
		if name == "" || n.byName[name] != nil {
			return fail(fmt.Errorf("netns: host name %q is empty or repeated", name))
		}
		h := &Host{Name: name, NS: n.prefix + name, Addr: fmt.Sprintf("10.200.%d.%d", third, i+2), swIf: "v" + strconv.Itoa(i), owner: n}
		if err := ip(ctx, "netns", "add", h.NS); err != nil {
			return fail(err)
		}
		n.hosts = append(n.hosts, h)
		n.byName[name] = h
		for _, args := range [][]string{
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", h.swIf, "netns", n.sw},
			{"-n", h.NS, "addr", "add", h.Addr + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
			{"-n", n.sw, "link", "set", h.swIf, "master", "br0"},
			{"-n", n.sw, "link", "set", h.swIf, "up"},
		} {
			if err := ip(ctx, args...); err != nil {
				return fail(err)
			}
		}
	}
	return n, nil
}

// Host returns the host called name, or nil.
func (n *Net) Host(name string) *Host { return n.byName[name] }

// Hosts returns the hosts in the order given to New.
func (n *Net) Hosts() []*Host { return append([]*Host(nil), n.hosts...) }

// Cut takes the host's link down at the bridge: its packets are dropped
// both ways, its processes keep running and see their peers time out.
func (n *Net) Cut(ctx context.Context, name string) error {
	h := n.byName[name]
	if h == nil {
		return fmt.Errorf("netns: no host %q", name)
	}
	return ip(ctx, "-n", n.sw, "link", "set", h.swIf, "down")
}

// Restore brings a cut host's link back up.
func (n *Net) Restore(ctx context.Context, name string) error {
	h := n.byName[name]
	if h == nil {
		return fmt.Errorf("netns: no host %q", name)
	}
	return ip(ctx, "-n", n.sw, "link", "set", h.swIf, "up")
}

// Close kills every process left in the namespaces and deletes them. It
// is idempotent and safe to defer right after New.
func (n *Net) Close() error {
	var errs []error
	n.once.Do(func() {
		ctx := context.Background()
		nss := []string{n.sw}
		for _, h := range n.hosts {
			nss = append(nss, h.NS)
		}
		for _, ns := range nss {
			killAll(ns)
			if _, err := os.Stat("/run/netns/" + ns); err == nil {
				if err := ip(ctx, "netns", "del", ns); err != nil {
					errs = append(errs, err)
				}
			}
		}
	})
	return errors.Join(errs...)
}

// killAll kills the processes running in namespace ns.
func killAll(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStale deletes namespaces made by earlier runs whose process is
// gone (a test killed before its Close).
func removeStale(ctx context.Context) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running
		}
		killAll(e.Name())
		_ = ip(ctx, "netns", "del", e.Name())
	}
}
