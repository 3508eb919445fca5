package transport

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/heraldgg/herald/protocol"
)

// Handler is what the transport calls for each connection. It is implemented by the
// gateway. For one Conn the calls never overlap and come in order: Open once, then
// Frame for each complete frame (or Broken once), then Closed once. They run on pool
// goroutines, not on the event loop, but a slow handler delays that connection's
// next frames, so anything that waits on the network belongs on its own goroutine.
type Handler interface {
	// Open is called once the connection is established (after the WebSocket
	// upgrade). The handler typically attaches its state with SetState.
	Open(c *Conn)
	// Frame delivers one complete frame. text is true for a WebSocket text frame;
	// TCP frames are never text. payload is only valid during the call. An empty
	// payload is a keep-alive (a WebSocket ping or pong, a zero-length TCP frame):
	// activity with nothing to decode.
	Frame(c *Conn, text bool, payload []byte)
	// Broken reports that the byte stream cannot be framed any more (a TCP length
	// prefix over the limit). The handler says why to the client and closes c.
	Broken(c *Conn, err error)
	// Closed is called once after the connection is gone, with the cause when it
	// was not a normal close.
	Closed(c *Conn, err error)
}

// Conn is one client connection.
type Conn struct {
	// Immutable after creation.
	kind   Kind
	nb     *nbio.Conn
	ws     *websocket.Conn // nil for TCP
	remote net.Addr
	tcpIn  *protocol.TCPReader
	server *server

	// Set by the handler in Open, read in later calls (ordered by the job list).
	state any

	// pending counts bytes handed to Write that the kernel has not taken yet.
	// Incremented by writers, decremented by the engine's written-size hook.
	pending atomic.Int64
	// closing is set once a graceful close started; further writes are refused.
	closing atomic.Bool
	closed  atomic.Bool
	// drained, when set, is called on the event loop each time pending falls to zero.
	drained atomic.Pointer[func()]
	// backlogged is set while a Write left bytes for the event loop to send, so that
	// only a real backlog reports a drain.
	backlogged atomic.Bool
}

// OnDrained registers fn to run whenever the bytes buffered by Write have all
// reached the kernel. fn runs on the event loop: it must only hand off work.
func (c *Conn) OnDrained(fn func()) { c.drained.Store(&fn) }

// Kind reports the transport the connection arrived on.
func (c *Conn) Kind() Kind { return c.kind }

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetState attaches the handler's state. Call it from Open.
func (c *Conn) SetState(v any) { c.state = v }

// State returns what SetState attached.
func (c *Conn) State() any { return c.state }

// Buffered reports the bytes accepted by Write that still wait for the kernel.
func (c *Conn) Buffered() int {
	if n := c.pending.Load(); n > 0 {
		return int(n)
	}
	return 0
}

// Backlogged reports whether a write left bytes for the event loop to send; the
// OnDrained function runs when they are gone.
func (c *Conn) Backlogged() bool { return c.backlogged.Load() }

// Write sends whole wire frames (built with AppendFrame) without blocking. What the
// socket does not take now is copied and sent later. It may be called from any
// goroutine; each call's bytes stay contiguous on the wire.
func (c *Conn) Write(b []byte) error {
	if c.closing.Load() {
		return net.ErrClosed
	}
	return c.write(b)
}

func (c *Conn) write(b []byte) error {
	c.pending.Add(int64(len(b)))
	if _, err := c.nb.Write(b); err != nil {
		c.pending.Add(-int64(len(b)))
		return err
	}
	if c.pending.Load() > 0 {
		c.backlogged.Store(true)
		// The event loop may have drained the rest before the flag was set.
		if c.pending.Load() <= 0 {
			c.drain()
		}
	}
	return nil
}

func (c *Conn) drain() {
	if !c.backlogged.CompareAndSwap(true, false) {
		return
	}
	if fn := c.drained.Load(); fn != nil {
		(*fn)()
	}
}

// Close writes a WebSocket close frame with code and reason (nothing more on TCP) and
// closes the connection once what is buffered has been sent, or after linger at the
// latest. Frames written before Close are delivered first when the client reads.
func (c *Conn) Close(code protocol.Code, reason string, linger time.Duration) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	if c.kind == WebSocket {
		if len(reason) > 123 {
			reason = reason[:123] // a control frame's payload is at most 125 bytes
		}
		payload := make([]byte, 2, 2+len(reason))
		binary.BigEndian.PutUint16(payload, uint16(code))
		payload = append(payload, reason...)
		_ = c.write(appendWSFrame(nil, opClose, payload))
	}
	if c.Buffered() == 0 || linger <= 0 {
		c.Abort()
		return
	}
	c.server.lingering(c, linger)
}

// Abort closes the connection at once, dropping anything still buffered.
func (c *Conn) Abort() {
	if c.closed.CompareAndSwap(false, true) {
		c.closing.Store(true)
		_ = c.nb.Close()
	}
}

func (c *Conn) writePong(data []byte) {
	if !c.closing.Load() {
		_ = c.write(appendWSFrame(nil, opPong, data))
	}
}

// written is the engine's hook: n bytes of c reached the kernel.
func (c *Conn) written(n int) {
	if c.pending.Add(-int64(n)) > 0 {
		return
	}
	if c.closing.Load() {
		if !c.closed.Load() {
			// nbio calls this hook with the connection's lock held, and closing
			// takes that lock: close from outside the hook.
			go c.Abort()
		}
		return
	}
	c.drain()
}
