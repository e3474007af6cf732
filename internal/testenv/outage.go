package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// OutageProxy forwards TCP connections to a server, except during an
// outage: then it closes the connections it forwards and every new one at
// once, as a server that is restarting or a broken network path does.
// Tests put it between a client and a real server (versitygw).
type OutageProxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// NewOutageProxy listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func NewOutageProxy(t testing.TB, target string) *OutageProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &OutageProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

// Addr is the proxy's host:port.
func (p *OutageProxy) Addr() string { return p.ln.Addr().String() }

// Down starts an outage (and cuts the open connections) or ends it.
func (p *OutageProxy) Down(down bool) {
	p.down.Store(down)
	if down {
		p.cut()
	}
}

// IsDown reports an outage.
func (p *OutageProxy) IsDown() bool { return p.down.Load() }

func (p *OutageProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *OutageProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *OutageProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		go func() {
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			p.track(c, true)
			p.track(s, true)
			defer func() { p.track(c, false); p.track(s, false); c.Close(); s.Close() }()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			_, _ = io.Copy(c, s)
		}()
	}
}
