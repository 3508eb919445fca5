package client_test

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxy sits between a client and a node so that a test can break the network
// under the client: sever every link, hold new ones (and the bytes on open ones)
// until released, refuse new ones, or send them to another node. It copies raw
// bytes, so it serves ws:// and tcp:// alike.
type proxy struct {
	t  testing.TB
	ln net.Listener
	wg sync.WaitGroup // the accept loop and every link's goroutines

	mu sync.Mutex
	// Guarded by mu.
	target string // host:port links are forwarded to
	// Each gate is closed while traffic flows and open while it is held: up for
	// new links and client bytes, down for node bytes.
	up, down chan struct{}
	links    map[*link]struct{}
	accepted int
	refusing bool
	// stallAt, when positive, is the number of client chunks new links forward;
	// the rest are swallowed, each reported on stalled, until the link is cut.
	stallAt int
	stalled chan struct{}
	sources []net.Addr // the client address of every accepted connection
}

// link is one client connection and, once dialled, its node connection.
type link struct {
	client, node net.Conn
	done         chan struct{} // closed when the link is severed
}

// newProxy listens on loopback and forwards to target (host:port). It is torn
// down, every link with it, when the test ends.
func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, up: opened(), down: opened(),
		links: make(map[*link]struct{}), stalled: make(chan struct{}, 100)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.refuse()
		p.wg.Wait()
	})
	return p
}

// via returns nodeURL (ws://… or tcp://…) with its host replaced by the proxy's.
func (p *proxy) via(nodeURL string) string {
	p.t.Helper()
	u, err := url.Parse(nodeURL)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

// hostOf returns the host:port of a node URL, for newProxy and retarget.
func hostOf(t testing.TB, nodeURL string) string {
	t.Helper()
	u, err := url.Parse(nodeURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // refuse closed the listener
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.refusing {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.accepted++
		p.sources = append(p.sources, c.RemoteAddr())
		p.links[l] = struct{}{}
		gate, target, stallAt := p.up, p.target, p.stallAt
		// Added under mu so that refuse, which waits on wg, cannot miss it.
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l, gate, target, stallAt)
	}
}

// serve dials the node once the gate opens, then copies both ways.
func (p *proxy) serve(l *link, gate chan struct{}, target string, stallAt int) {
	defer p.wg.Done()
	defer p.drop(l)
	select {
	case <-gate:
	case <-l.done:
		return
	}
	n, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if _, ok := p.links[l]; !ok {
		p.mu.Unlock()
		n.Close()
		return
	}
	l.node = n
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer p.drop(l)
		p.pipe(l, n, l.client, stallAt, func(p *proxy) chan struct{} { return p.up })
	}()
	p.pipe(l, l.client, n, 0, func(p *proxy) chan struct{} { return p.down })
}

// pipe copies from src to dst, holding each chunk while its gate is shut, and
// swallowing those after the first stallAt when it is positive.
func (p *proxy) pipe(l *link, dst, src net.Conn, stallAt int, gateOf func(*proxy) chan struct{}) {
	buf := make([]byte, 32<<10)
	for chunks := 1; ; chunks++ {
		n, err := src.Read(buf)
		if n > 0 && stallAt > 0 && chunks > stallAt {
			select {
			case p.stalled <- struct{}{}:
			default: // the test has seen enough of them
			}
			n = 0
		}
		if n > 0 {
			p.mu.Lock()
			gate := gateOf(p)
			p.mu.Unlock()
			select {
			case <-gate:
			case <-l.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// drop severs one link: both sockets close, so each side sees the other go.
func (p *proxy) drop(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(l)
}

func (p *proxy) dropLocked(l *link) {
	if _, ok := p.links[l]; !ok {
		return
	}
	delete(p.links, l)
	close(l.done)
	l.client.Close()
	if l.node != nil {
		l.node.Close()
	}
}

// sever cuts every current link; new connections are still accepted.
func (p *proxy) sever() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		p.dropLocked(l)
	}
}

// hold stops all traffic: new connections are accepted but not forwarded, and
// bytes on open links wait, until release.
func (p *proxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up, p.down = shut(p.up), shut(p.down)
}

// holdReplies stops the bytes from the node only: the node still hears the
// client (its pings keep the session alive) while the client hears nothing.
func (p *proxy) holdReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = shut(p.down)
}

// release lets held connections and bytes through.
func (p *proxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range []chan struct{}{p.up, p.down} {
		select {
		case <-g:
		default:
			close(g)
		}
	}
}

func opened() chan struct{} {
	g := make(chan struct{})
	close(g)
	return g
}

// shut returns a held gate: g itself when it is held already, so that whoever
// waits on it is let through by the next release.
func shut(g chan struct{}) chan struct{} {
	select {
	case <-g:
		return make(chan struct{})
	default:
		return g
	}
}

// refuse severs every link and closes the listener, so that redials fail at once
// with "connection refused".
func (p *proxy) refuse() {
	p.mu.Lock()
	p.refusing = true
	p.mu.Unlock()
	p.ln.Close()
	p.sever()
}

// stallAfter makes links accepted from now on forward only the first n chunks
// the client writes (0: all of them). The client writes each frame in one system
// call and waits for an answer between its first frames (the WebSocket upgrade,
// connect), so chunks are frames there; the first frame a link swallows is
// reported on p.stalled.
func (p *proxy) stallAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stallAt = n
}

// clientAddrs returns the client address of every connection accepted.
func (p *proxy) clientAddrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]net.Addr(nil), p.sources...)
}

// retarget sends connections accepted from now on to another node.
func (p *proxy) retarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// connections returns how many connections the proxy has accepted.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}
