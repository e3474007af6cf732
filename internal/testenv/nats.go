package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NATSServerBins returns the nats-server binaries of the oldest and newest
// supported versions, by name ("Oldest", "Newest").
func NATSServerBins(t testing.TB) map[string]string {
	t.Helper()
	bins := strings.Split(Require(t, NATSServers), string(os.PathListSeparator))
	if len(bins) != 2 {
		t.Fatalf("%s = %q: want two binaries, oldest and newest", NATSServers, bins)
	}
	return map[string]string{"Oldest": bins[0], "Newest": bins[1]}
}

// NATSProcess is a nats-server process owned by one test: its own port
// and file store, so that the test may kill and restart it.
type NATSProcess struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func StartNATS(t testing.TB, bin string) *NATSProcess {
	t.Helper()
	p := &NATSProcess{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(func() {
		if p.cmd != nil {
			p.Kill()
		}
	})
	// A free port is free only until another test of the machine takes
	// it: the server then fails to listen, and another port is tried.
	for attempt := 1; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nmax_payload: 8MB\njetstream { store_dir: %q }\n", p.port, filepath.Join(p.dir, "js"))
		if err := os.WriteFile(filepath.Join(p.dir, "server.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		log, err := p.startOnce()
		if err == nil {
			return p
		}
		if attempt == 5 || !strings.Contains(log, "address already in use") {
			t.Fatalf("%v; log:\n%s", err, log)
		}
	}
}

// start runs the server on the same port and store and waits until it
// is ready.
func (p *NATSProcess) start() {
	p.t.Helper()
	if log, err := p.startOnce(); err != nil {
		p.t.Fatalf("%v; log:\n%s", err, log)
	}
}

// startOnce runs the server and waits until it says it is ready and
// accepts connections. A connection alone could reach another program
// that holds the port a moment. On failure it returns what the server
// logged.
func (p *NATSProcess) startOnce() (string, error) {
	logPath := filepath.Join(p.dir, "server.log")
	var from int64 // the log is appended to across restarts
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	newLog := func() string {
		b, _ := os.ReadFile(logPath)
		if int64(len(b)) < from {
			return string(b)
		}
		return string(b[from:])
	}
	p.cmd = exec.Command(p.bin, "-c", filepath.Join(p.dir, "server.conf"), "-l", logPath)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.bin, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if strings.Contains(newLog(), "Server is ready") {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), time.Second)
			if err == nil {
				_ = c.Close()
				return "", nil
			}
		}
		select {
		case <-p.done:
			p.cmd = nil
			return newLog(), fmt.Errorf("%s exited at start", p.bin)
		default:
		}
		if time.Now().After(deadline) {
			return newLog(), fmt.Errorf("%s is not ready after 20s", p.bin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *NATSProcess) Kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("nats-server pid %d still running 10s after SIGKILL", p.cmd.Process.Pid)
	}
	p.cmd = nil
}

// Restart starts the server again on the same port and store.
func (p *NATSProcess) Restart() { p.start() }

// WipeStore removes the server's file store: a server started after it
// comes back empty, as one with memory storage or a lost volume does.
// Call it while the server is stopped.
func (p *NATSProcess) WipeStore() {
	p.t.Helper()
	if p.cmd != nil {
		p.t.Fatal("WipeStore of a running nats-server")
	}
	if err := os.RemoveAll(filepath.Join(p.dir, "js")); err != nil {
		p.t.Fatal(err)
	}
}

func (p *NATSProcess) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

// Version is the server's --version line.
func (p *NATSProcess) Version(t testing.TB) string {
	out, err := exec.Command(p.bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", p.bin, err)
	}
	return strings.TrimSpace(string(out))
}

// Freeze stops the server with SIGSTOP (its connections stay open,
// nothing is answered) and waits until every thread of it is stopped:
// kill(2) returns before a running thread has stopped.
func (p *NATSProcess) Freeze() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(p.Thaw)
	pid := p.cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			p.t.Fatalf("nats-server pid %d not stopped 10s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// Thaw resumes a frozen server.
func (p *NATSProcess) Thaw() {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

func allStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) STATE ...; comm may hold spaces, so split after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}
