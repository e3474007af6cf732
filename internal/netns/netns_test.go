package netns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
)

// TestMain doubles as the helper processes the test runs inside the
// namespaces: NETNS_HELPER=serve|dial, NETNS_ADDR.
func TestMain(m *testing.M) {
	switch os.Getenv("NETNS_HELPER") {
	case "serve":
		ln, err := net.Listen("tcp", os.Getenv("NETNS_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(0)
			}
			fmt.Fprintf(c, "hello from %s\n", os.Getenv("NETNS_NAME"))
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", os.Getenv("NETNS_ADDR"), time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(line)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func require(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if testenv.CI() {
			t.Fatalf("%v: the multi-host tests run as root in CI", err)
		}
		t.Skipf("%v: skipping the multi-host test (run as root to include it)", err)
	}
}

func helper(ctx context.Context, h *Host, mode, addr string) *execCmd {
	cmd := h.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETNS_HELPER="+mode, "NETNS_ADDR="+addr, "NETNS_NAME="+h.Name)
	return &execCmd{cmd}
}

func dial(t *testing.T, ctx context.Context, from *Host, addr string) (string, error) {
	t.Helper()
	out, err := helper(ctx, from, "dial", addr).cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestHarness(t *testing.T) {
	require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := New(ctx, "nats", "coord", "rt1", "rt2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		for _, h := range n.Hosts() {
			if _, err := os.Stat("/run/netns/" + h.NS); err == nil {
				t.Errorf("namespace %s left behind", h.NS)
			}
		}
	})
	nats := n.Host("nats")
	addr := nats.Addr + ":7422"
	srv := helper(ctx, nats, "serve", addr).cmd
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("server in %s: %q %v", nats.NS, line, err)
	}
	for _, h := range []string{"coord", "rt1", "rt2"} {
		out, err := dial(t, ctx, n.Host(h), addr)
		if err != nil || out != "hello from nats" {
			t.Fatalf("%s -> nats: %q %v", h, out, err)
		}
	}
	if err := n.Cut(ctx, "rt1"); err != nil {
		t.Fatal(err)
	}
	if out, err := dial(t, ctx, n.Host("rt1"), addr); err == nil {
		t.Fatalf("rt1 reached nats through a cut link: %q", out)
	}
	if out, err := dial(t, ctx, n.Host("rt2"), addr); err != nil || out != "hello from nats" {
		t.Fatalf("rt2 lost nats when rt1 was cut: %q %v", out, err)
	}
	if err := n.Restore(ctx, "rt1"); err != nil {
		t.Fatal(err)
	}
	var out string
	for i := 0; i < 20; i++ { // the bridge port needs a moment to forward again
		if out, err = dial(t, ctx, n.Host("rt1"), addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || out != "hello from nats" {
		t.Fatalf("rt1 after restore: %q %v", out, err)
	}
	if err := n.Cut(ctx, "nope"); err == nil {
		t.Fatal("cut of an unknown host succeeded")
	}
}

func TestCloseKillsProcesses(t *testing.T) {
	require(t)
	ctx := context.Background()
	n, err := New(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cmd := n.Host("a").Command(ctx, "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(100 * time.Millisecond)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a process in the namespace survived Close")
	}
	if _, err := os.Stat("/run/netns/" + n.Host("a").NS); err == nil {
		t.Fatal("namespace left after Close")
	}
}

type execCmd struct{ cmd *exec.Cmd }
