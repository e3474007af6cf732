package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Broker is a message broker process of the harness's own: its own
// loopback ports and data directory, started again on the same store
// after a kill.
type Broker interface {
	// Bus is "nats" or "rabbitmq".
	Bus() string
	// Version names the server and its version once it has started
	// ("nats-server v2.9.10", "rabbitmq 3.10.8").
	Version() string
	// URL is the bus URL the programs connect to.
	URL() string
	// Start starts the broker (again, on the same store and ports) and
	// returns once it serves clients.
	Start(ctx context.Context) error
	// Proc is the current broker process (nil before Start).
	Proc() *Proc
	// Close stops whatever helper processes the broker keeps besides
	// itself (the broker process is stopped by Procs.Close).
	Close()
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func dialable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NATSServer is a nats-server process with a JetStream file store.
type NATSServer struct {
	Path      string // the nats-server binary
	procs     *Procs
	dir       string
	port, mon int
	n         int
	cur       *Proc
}

// NewNATSServer prepares a nats-server with its data in dir.
func NewNATSServer(procs *Procs, path, dir string) (*NATSServer, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	s := &NATSServer{Path: path, procs: procs, dir: dir, port: ports[0], mon: ports[1]}
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\nmax_payload: 8MB\njetstream { store_dir: %q }\n",
		s.port, s.mon, filepath.Join(dir, "js"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return s, os.WriteFile(filepath.Join(dir, "server.conf"), []byte(conf), 0o644)
}

func (s *NATSServer) Bus() string { return "nats" }

// Version runs nats-server --version.
func (s *NATSServer) Version() string {
	out, err := exec.Command(s.Path, "--version").Output()
	if err != nil {
		return "nats-server (version unknown)"
	}
	return strings.TrimSpace(strings.Replace(string(out), ":", "", 1))
}
func (s *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }
func (s *NATSServer) Proc() *Proc { return s.cur }
func (s *NATSServer) Close()      {}

// Start starts nats-server and waits until /healthz says JetStream is
// ready.
func (s *NATSServer) Start(ctx context.Context) error {
	s.n++
	p, err := s.procs.Start(ProcSpec{Name: fmt.Sprintf("nats-server-%d", s.n), Path: s.Path,
		Args: []string{"-c", filepath.Join(s.dir, "server.conf")}, Env: os.Environ()})
	if err != nil {
		return err
	}
	s.cur = p
	health := fmt.Sprintf("http://127.0.0.1:%d/healthz", s.mon)
	return waitFor(ctx, func() error {
		if !p.Running() {
			return permanentf("nats-server exited during startup (%s); last lines:\n%s", p.Exit(), p.Tail(30))
		}
		resp, err := http.Get(health)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("nats-server /healthz: %s", resp.Status)
		}
		return dialable(fmt.Sprintf("127.0.0.1:%d", s.port))
	})
}

// RabbitMQDir is where Debian's package puts the broker's scripts.
const RabbitMQDir = "/usr/lib/rabbitmq/bin"

// RabbitMQServer is a rabbitmq-server node of its own: a node name that
// cannot collide with another node on this machine (never the shared
// skeintest-N@localhost), its own AMQP, distribution and epmd ports, Erlang
// cookie and data directory (as scripts/services/rabbitmq.sh does).
type RabbitMQServer struct {
	Script               string // rabbitmq-server
	procs                *Procs
	dir                  string
	node                 string
	amqp, dist, epmdPort int
	pass                 string
	epmd                 *Proc
	n                    int
	cur                  *Proc
}

// NewRabbitMQServer prepares a node with its data in dir.
func NewRabbitMQServer(procs *Procs, script, dir string) (*RabbitMQServer, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &RabbitMQServer{Script: script, procs: procs, dir: dir, node: "skeinchaos" + randomHex(4) + "@localhost",
		amqp: ports[0], dist: ports[1], epmdPort: ports[2], pass: randomHex(10)}
	for _, d := range []string{"home", "mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"home/.erlang.cookie": randomHex(10),
		"rabbitmq.conf": fmt.Sprintf(`listeners.tcp.1 = 127.0.0.1:%d
loopback_users = none
default_user = skein
default_pass = %s
default_vhost = /
max_message_size = 134217728
consumer_timeout = 3600000
log.file.level = info
log.console = true
log.console.level = info
`, s.amqp, s.pass),
		"enabled_plugins.erl": "[].\n",
		"rabbitmq-env.conf":   "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	return s, os.Chmod(filepath.Join(dir, "home/.erlang.cookie"), 0o400)
}

func (s *RabbitMQServer) Bus() string { return "rabbitmq" }

var rabbitVersion = regexp.MustCompile(`Starting RabbitMQ ([0-9][0-9.]*)`)

// Version reads the version from the node's log.
func (s *RabbitMQServer) Version() string {
	if s.cur != nil {
		if m := rabbitVersion.FindStringSubmatch(s.cur.Log()); m != nil {
			return "rabbitmq " + m[1]
		}
	}
	return "rabbitmq (version unknown)"
}
func (s *RabbitMQServer) URL() string {
	return fmt.Sprintf("amqp://skein:%s@127.0.0.1:%d/", s.pass, s.amqp)
}
func (s *RabbitMQServer) Proc() *Proc { return s.cur }

// Node is the Erlang node name.
func (s *RabbitMQServer) Node() string { return s.node }

func (s *RabbitMQServer) env() []string {
	d := s.dir
	return append(os.Environ(),
		"HOME="+filepath.Join(d, "home"),
		"ERL_EPMD_PORT="+strconv.Itoa(s.epmdPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_NODENAME="+s.node,
		"RABBITMQ_USE_LONGNAME=false",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(s.amqp),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(s.dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(d, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(d, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(d, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(d, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(d, "enabled_plugins.erl"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(d, "rabbitmq-env.conf"),
		"RABBITMQ_PID_FILE="+filepath.Join(d, "rabbitmq.pid"),
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8",
	)
}

// Start starts epmd (once, on the node's own port, as a child process of
// the harness) and the node, and returns once the AMQP listener accepts
// connections: it opens last in RabbitMQ's boot sequence.
func (s *RabbitMQServer) Start(ctx context.Context) error {
	if s.epmd == nil || !s.epmd.Running() {
		epmd, err := exec.LookPath("epmd")
		if err != nil {
			epmd = "/usr/lib/erlang/bin/epmd"
		}
		s.n++
		p, err := s.procs.Start(ProcSpec{Name: fmt.Sprintf("epmd-%d", s.n), Path: epmd,
			Args: []string{"-port", strconv.Itoa(s.epmdPort), "-address", "127.0.0.1"}, Env: s.env()})
		if err != nil {
			return err
		}
		s.epmd = p
		if err := waitFor(ctx, func() error {
			if !p.Running() {
				return permanentf("epmd exited (%s):\n%s", p.Exit(), p.Tail(20))
			}
			return dialable(fmt.Sprintf("127.0.0.1:%d", s.epmdPort))
		}); err != nil {
			return err
		}
	}
	s.n++
	p, err := s.procs.Start(ProcSpec{Name: fmt.Sprintf("rabbitmq-server-%d", s.n), Path: s.Script, Env: s.env(), Tree: true})
	if err != nil {
		return err
	}
	s.cur = p
	return waitFor(ctx, func() error {
		if !p.Running() {
			return permanentf("rabbitmq-server exited during startup (%s); last lines:\n%s", p.Exit(), p.Tail(30))
		}
		return dialable(fmt.Sprintf("127.0.0.1:%d", s.amqp))
	})
}

// Close stops the node's epmd.
func (s *RabbitMQServer) Close() {
	if s.epmd != nil {
		s.epmd.Kill()
	}
}
