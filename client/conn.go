package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldgg/herald/protocol"
)

// aLongTimeAgo is a deadline in the past, which interrupts blocked I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one network connection and its handshake's results. A reconnect makes a
// new conn; nothing of a dead one is reused, so a late reply can never match a call
// on its successor.
type conn struct {
	// Immutable after dial.
	c     *Client
	nc    net.Conn
	ws    bool
	codec protocol.Codec
	max   int
	start time.Time // origin of lastSent and the heartbeat's times, for a monotonic clock

	// Immutable after the handshake.
	hb      time.Duration // heartbeat interval; 0 when the server asked for none
	session string
	node    string

	// Owned by the reader goroutine (which runs the handshake first).
	br        *bufio.Reader
	wsr       wsutil.Reader
	rbuf      []byte
	ctl       [125]byte // a control frame's payload
	env       protocol.Envelope
	resubLeft int  // resubscriptions not yet answered; OnReconnect fires at 0
	resumed   bool // this conn replaced a dropped one

	// wlock is a one-slot semaphore rather than a sync.Mutex so that a caller
	// waiting behind a stalled write can give up when its context ends.
	wlock chan struct{}
	// Guarded by wlock.
	wbuf       []byte
	wenv       protocol.Envelope
	wsince     protocol.Position
	wdeadline  time.Time
	wtimeout   time.Duration
	hdr        headerWriter
	hdrScratch [ws.MaxHeaderSize]byte

	lastSent atomic.Int64 // nanoseconds since start
	// recvd counts frames received. The reader counts rather than reading the
	// clock for each frame (a tenth of a busy subscriber's CPU); the heartbeat
	// notices when the count moves.
	recvd atomic.Uint64

	mu sync.Mutex
	// Guarded by mu. nil once the connection is down: nothing may register then.
	pending map[uint64]*call

	downOnce sync.Once
	down     chan struct{} // closed when the connection is dead
	cause    error         // why; written before down is closed

	hbMu sync.Mutex
	// Guarded by hbMu.
	hbTimer   *time.Timer
	hbStopped bool
	recvSeen  uint64 // recvd at the last tick that saw it move
	recvAt    int64  // that tick's time: no frame arrived before it was seen

	retryMu sync.Mutex
	// Guarded by retryMu: resubscriptions to ask again (resub.go).
	retries      map[*retry]struct{}
	retryStopped bool
}

// frame is what a call sends. It is copied into the conn's reused envelope under
// wlock, so that sending allocates nothing per call.
type frame struct {
	op          protocol.Op
	id          uint64
	topic       string
	data        []byte
	since       Position
	hasSince    bool
	route       string
	meta        map[string]string
	mapName     string
	x, y        float64
	user, token string
}

// dial opens a connection to tg and runs the connect handshake, within
// DialTimeout.
func (c *Client) dial(ctx context.Context, tg target) (*conn, error) {
	s := &c.s
	ctx, cancel := context.WithTimeout(ctx, s.DialTimeout)
	defer cancel()
	nd := net.Dialer{}
	if s.LocalAddr.IsValid() {
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.LocalAddr, 0))
	}
	cn := &conn{
		c:        c,
		ws:       !tg.tcp,
		codec:    s.Codec,
		max:      s.MaxFrameSize,
		start:    time.Now(),
		wlock:    make(chan struct{}, 1),
		wbuf:     make([]byte, 0, 256),
		wtimeout: s.DialTimeout,
		pending:  make(map[uint64]*call),
		down:     make(chan struct{}),
		retries:  make(map[*retry]struct{}),
	}
	if tg.tcp {
		nc, err := nd.DialContext(ctx, "tcp", tg.addr)
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", tg.url, err)
		}
		cn.nc, cn.br = nc, bufio.NewReaderSize(nc, s.ReadBufferSize)
	} else {
		d := ws.Dialer{NetDial: nd.DialContext, TLSConfig: s.TLS, ReadBufferSize: s.ReadBufferSize}
		nc, br, _, err := d.Dial(ctx, tg.url)
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", tg.url, err)
		}
		// br holds whatever followed the upgrade response; it already wraps nc.
		if br == nil {
			br = bufio.NewReaderSize(nc, s.ReadBufferSize)
		}
		cn.nc, cn.br = nc, br
		cn.wsr = wsutil.Reader{
			Source:         br,
			State:          ws.StateClientSide,
			MaxFrameSize:   int64(s.MaxFrameSize),
			MaxMessageSize: int64(s.MaxFrameSize),
			OnIntermediate: cn.control,
		}
	}
	if err := cn.handshake(ctx); err != nil {
		cn.nc.Close()
		return nil, err
	}
	return cn, nil
}

// handshake sends connect and waits for connected. The reader goroutine does not
// run yet, so it reads the socket itself.
func (cn *conn) handshake(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	cn.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(aLongTimeAgo) })
	err := cn.connect(ctx)
	if !stop() || ctx.Err() != nil {
		return fmt.Errorf("client: connect handshake: %w", ctx.Err())
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket's deadline is ctx's, but its timer can fire a moment before
		// ctx's: report the same error either way.
		return fmt.Errorf("client: connect handshake: %w: %w", context.DeadlineExceeded, err)
	}
	if err != nil {
		return err
	}
	cn.nc.SetDeadline(time.Time{})
	cn.wdeadline = time.Time{}
	cn.wtimeout = cn.hb * 3 / 2
	if cn.hb == 0 {
		cn.wtimeout = cn.c.s.RequestTimeout
	}
	return nil
}

func (cn *conn) connect(ctx context.Context) error {
	s := &cn.c.s
	id := cn.c.nextID.Add(1)
	err := cn.send(ctx, &frame{op: protocol.Op_OP_CONNECT, id: id, user: s.User, token: s.Token}, nil)
	if err != nil {
		return err
	}
	for {
		p, codec, err := cn.readFrame()
		if err != nil {
			return fmt.Errorf("client: connect handshake: %w", err)
		}
		if len(p) == 0 {
			continue
		}
		e := &cn.env
		if err := codec.Decode(p, e); err != nil {
			return fmt.Errorf("client: connect answer: %w", err)
		}
		switch {
		case e.Op == protocol.Op_OP_CONNECTED && e.Id == id:
			cn.session, cn.node = e.Session, e.Node
			cn.hb = time.Duration(e.HeartbeatMs) * time.Millisecond
			return nil
		case e.Op == protocol.Op_OP_ERROR && e.Id == id:
			return &protocol.Error{Code: protocol.Code(e.Code), Reason: e.Reason}
		case e.Op == protocol.Op_OP_DISCONNECT:
			return disconnectError(e)
		}
	}
}

// terminalError marks a disconnect after which the client must not reconnect.
type terminalError struct{ err *protocol.Error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// disconnectError turns a disconnect frame into the drop's cause. The reconnect
// flag decides, except that 3500–3999 are terminal whatever it says.
func disconnectError(e *protocol.Envelope) error {
	perr := &protocol.Error{Code: protocol.Code(e.Code), Reason: e.Reason}
	if !e.Reconnect || (perr.Code.IsDisconnect() && !perr.Code.Reconnect()) {
		return &terminalError{perr}
	}
	return perr
}

// closeError turns a WebSocket close frame into the drop's cause: codes 3000–3999
// are Herald's disconnect codes, anything else is a plain network drop.
func closeError(code ws.StatusCode, reason string) error {
	pc := protocol.Code(code)
	switch {
	case !pc.IsDisconnect():
		return wsutil.ClosedError{Code: code, Reason: reason}
	case pc.Reconnect():
		return &protocol.Error{Code: pc, Reason: reason}
	}
	return &terminalError{&protocol.Error{Code: pc, Reason: reason}}
}

// now is the time since the conn was made, on the monotonic clock.
func (cn *conn) now() int64 { return int64(time.Since(cn.start)) }

// readFrame returns the next frame's payload, valid until the next call, and its
// codec. An empty payload is a keep-alive. Only the reader goroutine calls it.
func (cn *conn) readFrame() ([]byte, protocol.Codec, error) {
	if !cn.ws {
		p, err := protocol.ReadTCPFrame(cn.br, cn.rbuf, cn.max)
		if err != nil {
			return nil, 0, err
		}
		cn.recvd.Add(1)
		if cap(p) > cap(cn.rbuf) {
			cn.rbuf = p[:0]
		}
		// A node that refuses the connection before it has read connect does not
		// know the codec yet and refuses in JSON (docs/protocol.md, 1.2). A
		// Protobuf envelope never starts with '{'.
		if len(p) > 0 && p[0] == '{' {
			return p, protocol.CodecJSON, nil
		}
		return p, cn.codec, nil
	}
	for {
		hdr, err := cn.wsr.NextFrame()
		if errors.Is(err, wsutil.ErrFrameTooLarge) || errors.Is(err, wsutil.ErrMessageTooLarge) {
			return nil, 0, fmt.Errorf("client: %w: %w", protocol.ErrFrameTooLarge, err)
		}
		if err != nil {
			return nil, 0, err
		}
		cn.recvd.Add(1)
		if hdr.OpCode.IsControl() {
			if err := cn.control(hdr, &cn.wsr); err != nil {
				return nil, 0, err
			}
			continue
		}
		p, err := cn.readMessage(hdr)
		if err != nil {
			return nil, 0, err
		}
		if hdr.OpCode == ws.OpText {
			return p, protocol.CodecJSON, nil
		}
		return p, protocol.CodecProto, nil
	}
}

// readMessage reads one WebSocket message, every fragment of it, into rbuf.
func (cn *conn) readMessage(hdr ws.Header) ([]byte, error) {
	buf := cn.rbuf[:0]
	if int64(cap(buf)) < hdr.Length {
		buf = make([]byte, 0, hdr.Length) // at most MaxFrameSize: NextFrame checked
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= cn.max {
				return nil, fmt.Errorf("client: %w", protocol.ErrFrameTooLarge)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := cn.wsr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	cn.rbuf = buf[:0]
	return buf, nil
}

// control answers a WebSocket control frame, including one in the middle of a
// fragmented message (as wsutil.Reader.OnIntermediate).
func (cn *conn) control(hdr ws.Header, r io.Reader) error {
	p := cn.ctl[:hdr.Length] // ws.CheckHeader limits control frames to 125 bytes
	if _, err := io.ReadFull(r, p); err != nil {
		return err
	}
	switch hdr.OpCode {
	case ws.OpPing:
		return cn.sendControl(ws.OpPong, p)
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		cn.sendControl(ws.OpClose, p[:min(len(p), 2)]) // the RFC's echo; the socket closes next anyway
		return closeError(code, reason)
	}
	return nil
}

// send writes one frame. It waits for the write lock as long as ctx, timeout and
// the connection allow; the write itself is bounded by wtimeout, and a write that
// fails or times out kills the connection (a partial frame cannot be taken back).
func (cn *conn) send(ctx context.Context, f *frame, timeout <-chan time.Time) error {
	select {
	case cn.wlock <- struct{}{}:
	default:
		select {
		case cn.wlock <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return ErrTimeout
		case <-cn.down:
			return cn.dropErr()
		}
	}
	err := cn.writeLocked(f)
	<-cn.wlock
	return err
}

func (cn *conn) writeLocked(f *frame) error {
	e := &cn.wenv
	e.Op, e.Id, e.Topic, e.Data = f.op, f.id, f.topic, f.data
	e.Route, e.Meta, e.Map, e.X, e.Y = f.route, f.meta, f.mapName, f.x, f.y
	e.User, e.Token = f.user, f.token
	if f.hasSince {
		cn.wsince.Offset, cn.wsince.Epoch = f.since.Offset, f.since.Epoch
		e.Since = &cn.wsince
	}
	op := ws.OpBinary
	if cn.codec == protocol.CodecJSON {
		op = ws.OpText
	}
	head := protocol.TCPHeaderLen
	if cn.ws {
		head = ws.MaxHeaderSize
	}
	buf, err := cn.codec.Append(cn.wbuf[:head], e)
	e.Reset() // drop the caller's data and meta
	if err != nil {
		// Only Protobuf fails, on invalid UTF-8 in a string: the caller's mistake,
		// not the connection's.
		return fmt.Errorf("client: encode %s: %w", f.op.Name(), err)
	}
	cn.wbuf = buf
	return cn.writeFramedLocked(op, buf, head)
}

// sendControl writes a WebSocket control frame (pong or close) from the reader.
func (cn *conn) sendControl(op ws.OpCode, payload []byte) error {
	select {
	case cn.wlock <- struct{}{}:
	case <-cn.down:
		return cn.dropErr()
	}
	const head = ws.MaxHeaderSize
	buf := append(cn.wbuf[:head], payload...)
	cn.wbuf = buf
	err := cn.writeFramedLocked(op, buf, head)
	<-cn.wlock
	return err
}

// writeFramedLocked frames the payload buf[head:] in place, in the room left
// before it, and writes it in one system call.
func (cn *conn) writeFramedLocked(op ws.OpCode, buf []byte, head int) error {
	payload := buf[head:]
	var out []byte
	if cn.ws {
		h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
		ws.Cipher(payload, h.Mask, 0)
		start := head - ws.HeaderSize(h)
		cn.hdr = headerWriter(buf[start:head])
		if err := ws.WriteHeaderBuffer(&cn.hdr, h, cn.hdrScratch[:]); err != nil {
			return err
		}
		out = buf[start:]
	} else {
		// The raw-TCP frame: a 4-byte big-endian length, then the envelope.
		binary.BigEndian.PutUint32(buf[:protocol.TCPHeaderLen], uint32(len(payload)))
		out = buf
	}
	now := time.Now()
	// Moving a deadline costs a runtime timer update: refresh it only when half
	// of it is used up, which keeps the bound between 0.5 and 1 × wtimeout.
	if cn.wtimeout > 0 && cn.wdeadline.Sub(now) < cn.wtimeout/2 {
		cn.wdeadline = now.Add(cn.wtimeout)
		cn.nc.SetWriteDeadline(cn.wdeadline)
	}
	if _, err := cn.nc.Write(out); err != nil {
		cn.fail(err)
		return cn.dropErr()
	}
	cn.lastSent.Store(int64(now.Sub(cn.start)))
	return nil
}

// headerWriter lets ws.WriteHeaderBuffer encode a header into the room reserved
// before the payload, so that header and payload leave in one write.
type headerWriter []byte

func (w *headerWriter) Write(p []byte) (int, error) {
	if len(p) > len(*w) {
		return 0, io.ErrShortWrite
	}
	return copy(*w, p), nil
}

// fail marks the connection dead for cause (the first cause wins) and closes the
// socket, which ends the reader's blocking read.
func (cn *conn) fail(cause error) {
	cn.downOnce.Do(func() {
		cn.cause = cause
		close(cn.down)
		cn.nc.Close()
	})
}

// dropErr is the error of calls that the drop interrupted.
func (cn *conn) dropErr() error {
	<-cn.down
	return fmt.Errorf("%w: %w", ErrDisconnected, cn.cause)
}

// register adds a call that waits for the answer to id. It reports false when the
// connection is already down.
func (cn *conn) register(id uint64, cl *call) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.pending == nil {
		return false
	}
	cn.pending[id] = cl
	return true
}

// take removes and returns the call waiting for id, if any.
func (cn *conn) take(id uint64) *call {
	cn.mu.Lock()
	cl := cn.pending[id]
	delete(cn.pending, id)
	cn.mu.Unlock()
	return cl
}

// forget removes a call its caller gave up on. It reports false when the answer
// (or the drop) was taken for it already, which the caller then has to wait for.
func (cn *conn) forget(id uint64) bool {
	cn.mu.Lock()
	_, ok := cn.pending[id]
	delete(cn.pending, id)
	cn.mu.Unlock()
	return ok
}

// shutdown runs on the reader goroutine once the connection is dead: it stops the
// heartbeat and the resubscription retries and fails every call in flight. It returns the drop's error.
func (cn *conn) shutdown(cause error) error {
	cn.fail(cause)
	cn.stopHeartbeat()
	cn.stopRetries()
	err := cn.dropErr()
	cn.mu.Lock()
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	for _, cl := range pending {
		cl.finish(err)
	}
	return err
}

// closeWriteTimeout bounds the courtesy close frame Close sends.
const closeWriteTimeout = 100 * time.Millisecond

// closeNormally tells a WebSocket server that the close is deliberate (1000) when
// the write side is free, then closes.
func (cn *conn) closeNormally() {
	if cn.ws {
		select {
		case cn.wlock <- struct{}{}:
			cn.wtimeout, cn.wdeadline = closeWriteTimeout, time.Time{}
			const head = ws.MaxHeaderSize
			buf := binary.BigEndian.AppendUint16(cn.wbuf[:head], uint16(ws.StatusNormalClosure))
			cn.wbuf = buf
			cn.writeFramedLocked(ws.OpClose, buf, head)
			<-cn.wlock
		default:
		}
	}
	cn.fail(ErrClosed)
}
