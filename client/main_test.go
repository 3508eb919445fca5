package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// servertest calls the admin API through http.DefaultClient, whose transport
	// may keep a spare connection that never carried a request. A node's
	// Shutdown does not close such a connection (net/http counts it as new, not
	// idle, for 5 s, and the admin server is not force-closed after its Shutdown
	// times out), so both ends would outlive the test: close them from here.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(
			// nbio starts a package-level task pool when it is initialised; it
			// lives as long as the process.
			goleak.IgnoreAnyFunction("github.com/lesismal/nbio/taskpool.New.func3"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitFor bounds every wait on a condition: generous, because it only matters
// when a test is about to fail.
const waitFor = 10 * time.Second

type variant struct {
	name  string
	tcp   bool
	codec protocol.Codec
}

var variants = []variant{
	{"ws-json", false, protocol.CodecJSON},
	{"ws-proto", false, protocol.CodecProto},
	{"tcp-json", true, protocol.CodecJSON},
	{"tcp-proto", true, protocol.CodecProto},
}

// url is the node's address for this variant's transport.
func (v variant) url(n *servertest.Node) string {
	if v.tcp {
		return n.TCP
	}
	return n.WS
}

// config returns a client config for this variant, connecting to n directly, or
// through p when p is not nil.
func (v variant) config(n *servertest.Node, p *proxy) client.Config {
	u := v.url(n)
	if p != nil {
		u = p.via(u)
	}
	return client.Config{URL: u, Codec: v.codec}
}

// eachVariant runs fn for every transport and codec, in parallel.
func eachVariant(t *testing.T, fn func(t *testing.T, v variant)) {
	t.Helper()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

// dial connects cfg, with h's hooks when h is not nil, and closes the client when
// the test ends.
func dial(t testing.TB, cfg client.Config, h *hooks) *client.Client {
	t.Helper()
	if h != nil {
		h.install(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", cfg.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hooks records what a client reports through its Config callbacks. Handlers run
// on the client's reader, so the channels are buffered well past what a test
// sends, and a send never blocks it.
type hooks struct {
	messages    chan client.Message
	disconnects chan error
	reconnects  chan struct{}
	fails       chan error
}

func newHooks() *hooks {
	return &hooks{
		messages:    make(chan client.Message, 1000),
		disconnects: make(chan error, 100),
		reconnects:  make(chan struct{}, 100),
		fails:       make(chan error, 100),
	}
}

func (h *hooks) install(cfg *client.Config) {
	cfg.OnMessage = func(m client.Message) { h.messages <- m }
	cfg.OnDisconnect = func(err error) { h.disconnects <- err }
	cfg.OnReconnect = func() { h.reconnects <- struct{}{} }
	cfg.OnFail = func(err error) { h.fails <- err }
}

// inbox collects a subscription's messages.
type inbox chan client.Message

func newInbox() inbox { return make(inbox, 1000) }

func (b inbox) handle(m client.Message) { b <- m }

// expect receives the next message and checks it is topic's message at offset with
// payload(offset) as data.
func (b inbox) expect(t testing.TB, topic string, offset uint64, epoch string) client.Message {
	t.Helper()
	m := recv(t, b, fmt.Sprintf("%s offset %d", topic, offset))
	if m.Kind != protocol.Kind_KIND_TOPIC || m.Topic != topic || m.Offset != offset || m.Epoch != epoch ||
		string(m.Data) != string(payload(int(offset))) {
		t.Fatalf("want %s offset %d epoch %s data %s, got %+v (data %s)", topic, offset, epoch, payload(int(offset)), m, m.Data)
	}
	return m
}

// recv waits for a value on ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("after %v still waiting for %s", waitFor, what)
		panic("unreachable")
	}
}

// none checks that nothing was sent on ch so far.
func none[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	default:
	}
}

// closed waits for ch to close.
func closed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("after %v %s is still open", waitFor, what)
	}
}

// payload is application data that both codecs carry unchanged: compact JSON.
func payload(i int) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

// publish publishes payload(i) to topic through the admin API.
func publish(t testing.TB, n *servertest.Node, topic string, i int) client.Position {
	t.Helper()
	var pos struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	body := map[string]any{"topic": topic, "data": json.RawMessage(payload(i))}
	if st := n.API(t, "/api/publish", body, &pos); st != 200 {
		t.Fatalf("admin publish to %s: status %d", topic, st)
	}
	return client.Position{Offset: pos.Offset, Epoch: pos.Epoch}
}

// ctx returns a context that ends with the test, bounded by waitFor.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

// wantCode checks that err carries a *protocol.Error with code.
func wantCode(t testing.TB, err error, code protocol.Code) *protocol.Error {
	t.Helper()
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != code {
		t.Fatalf("want a *protocol.Error with code %d (%s), got %v", code, code, err)
	}
	return perr
}

// silentSession connects to n's raw TCP port with the JSON codec, then sends
// nothing, and returns the disconnect code the node ends the session with. It is
// the test's clock for the heartbeat: it returns only once the node has judged a
// session silent, which takes at least 1.5 heartbeat intervals.
func silentSession(t testing.TB, n *servertest.Node) protocol.Code {
	t.Helper()
	nc, err := net.Dial("tcp", hostOf(t, n.TCP))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitFor))
	if _, err := nc.Write(protocol.AppendTCPFrame(nil, []byte(`{"op":"connect","id":1}`))); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	for {
		p, err := protocol.ReadTCPFrame(br, nil, 1<<20)
		if errors.Is(err, io.EOF) {
			t.Fatal("the node closed the silent session without a disconnect frame")
		}
		if err != nil {
			t.Fatal(err)
		}
		var e protocol.Envelope
		if err := protocol.DecodeJSON(p, &e); err != nil {
			t.Fatal(err)
		}
		if e.Op == protocol.Op_OP_DISCONNECT {
			return protocol.Code(e.Code)
		}
	}
}
