package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
)

// hosts are the nodes' addresses: one loopback alias each, as three machines
// would have (Linux routes all of 127/8 to lo without setup).
var hosts = [3]string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// handshakeTimeout is the nodes' transport.handshake_timeout.
const handshakeTimeout = 5 * time.Second

// brokerTimeout bounds each broker call of the nodes (broker.redis and
// broker.nats request_timeout). The default, 5 s, would turn a 3 s freeze
// into publishes that wait and then succeed; at 1 s they fail, which is what
// the tests want to see handled.
const brokerTimeout = time.Second

// node is how the test reaches one node, wherever it runs.
type node struct {
	name    string
	ws, tcp string // client URLs
	admin   string // admin API base URL
	proc    *proc  // nil for a node in the test process
}

// startNodes runs three nodes in the test process on brokerURL, stopped when
// the test ends. tweak, when given, changes their configuration last.
func startNodes(t testing.TB, brokerURL string, tweak ...func(*config.Config)) []*node {
	t.Helper()
	nodes := make([]*node, len(hosts))
	for i, host := range hosts {
		n := servertest.Start(t, func(c *config.Config) {
			c.Node = fmt.Sprintf("n%d", i+1)
			c.Listen.Client, c.Listen.TCP, c.Listen.Admin = host+":0", host+":0", host+":0"
			c.Listen.GRPC, c.Listen.DemoService = "off", "off"
			c.Transport.HandshakeTimeout = handshakeTimeout
			c.Broker.URL = brokerURL
			c.Broker.Redis.RequestTimeout = brokerTimeout
			c.Broker.NATS.RequestTimeout = brokerTimeout
			for _, f := range tweak {
				f(c)
			}
		})
		nodes[i] = &node{name: n.Node(), ws: n.WS, tcp: n.TCP, admin: n.Admin}
	}
	return nodes
}

// startProcs runs three nodes as processes of the herald binary on brokerURL,
// so that one can be killed for real; they are stopped when the test ends.
func startProcs(t testing.TB, brokerURL string) []*node {
	t.Helper()
	bin := buildHerald(t)
	nodes := make([]*node, len(hosts))
	for i, host := range hosts {
		nodes[i] = startProc(t, bin, fmt.Sprintf("p%d", i+1), host, brokerURL)
	}
	return nodes
}

func buildHerald(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/heraldgg/herald/cmd/herald").CombinedOutput()
	if err != nil {
		t.Fatalf("build herald: %v\n%s", err, out)
	}
	return bin
}

// proc is one node process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	log    *logTail
}

// serving matches the line a node logs once every listener is up.
var serving = regexp.MustCompile(`msg="herald node serving".* client=(\S+) .* tcp=(\S+) admin=(\S+)`)

func startProc(t testing.TB, bin, name, host, brokerURL string) *node {
	t.Helper()
	addr := host + ":0"
	cmd := exec.Command(bin, "serve", "--node", name, "--broker", brokerURL,
		"--client-addr", addr, "--tcp-addr", addr, "--admin-addr", addr)
	cmd.Env = append(os.Environ(),
		"HERALD_LISTEN__GRPC=off",
		"HERALD_LISTEN__DEMO_SERVICE=off",
		"HERALD_DRAIN__TIMEOUT=3s",
		"HERALD_TRANSPORT__HANDSHAKE_TIMEOUT="+handshakeTimeout.String(),
		"HERALD_BROKER__REDIS__REQUEST_TIMEOUT="+brokerTimeout.String(),
		"HERALD_BROKER__NATS__REQUEST_TIMEOUT="+brokerTimeout.String(),
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: &logTail{}}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t, name) })

	// The node logs its bound addresses once it serves; the rest of its log is
	// kept (the pipe must be drained, or the node would block on a log write)
	// and shown if the test fails.
	found := make(chan []string, 1)
	go func() {
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			p.log.add(lines.Text())
			if m := serving.FindStringSubmatch(lines.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case m := <-found:
		return &node{name: name, ws: "ws://" + m[1] + "/ws", tcp: "tcp://" + m[2], admin: "http://" + m[3], proc: p}
	case <-p.exited:
		t.Fatalf("node %s exited before serving:\n%s", name, p.log)
	case <-time.After(waitFor):
		t.Fatalf("node %s not serving after %v:\n%s", name, waitFor, p.log)
	}
	return nil
}

// kill sends SIGKILL and waits for the process to be gone: no drain, no
// disconnect frames; its clients see their connections reset.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// stop ends the process at the end of the test: SIGTERM, so that it drains,
// then SIGKILL if it takes too long.
func (p *proc) stop(t testing.TB, name string) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(waitFor):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("node %s ignored SIGTERM for %v:\n%s", name, waitFor, p.log)
	}
	if t.Failed() {
		t.Logf("node %s log (last lines):\n%s", name, p.log)
	}
}

// logTail keeps the last lines of a node's log.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

const logLines = 200

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == logLines {
		l.lines = append(l.lines[:0], l.lines[logLines/2:]...)
	}
	l.lines = append(l.lines, line)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	for _, s := range l.lines {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// waitFor bounds every wait on a condition: generous, because it only matters
// when a test is about to fail.
const waitFor = 20 * time.Second

// eventually polls cond every 10 ms until it holds or waitFor passes, and
// reports whether it held.
func eventually(cond func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
	return true
}
