package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// raw is a test client that speaks the wire protocol by hand, so tests can send
// exactly the bytes they mean, good or bad.
type raw struct {
	t     testing.TB
	tcp   bool
	codec protocol.Codec
	nc    net.Conn
	br    *bufio.Reader
	id    uint64
}

// closed is what recv reports when the server closed the connection.
type closed struct {
	code   protocol.Code // WebSocket close code; 0 for TCP
	reason string
}

func (c closed) Error() string { return "closed: " + c.code.String() + " " + c.reason }

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

func dialRaw(t testing.TB, n *servertest.Node, v variant) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := &raw{t: t, tcp: v.tcp, codec: v.codec}
	if v.tcp {
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", strings.TrimPrefix(n.TCP, "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		r.nc, r.br = nc, bufio.NewReader(nc)
	} else {
		nc, br, _, err := ws.Dial(ctx, n.WS)
		if err != nil {
			t.Fatal(err)
		}
		r.nc = nc
		if br != nil {
			r.br = br
		} else {
			r.br = bufio.NewReader(nc)
		}
	}
	t.Cleanup(func() { _ = r.nc.Close() })
	return r
}

// connect dials and completes the handshake as user.
func connect(t testing.TB, n *servertest.Node, v variant, user string) (*raw, *protocol.Envelope) {
	t.Helper()
	r := dialRaw(t, n, v)
	got := r.call(&protocol.Envelope{Op: protocol.Op_OP_CONNECT, User: user})
	if got.Op != protocol.Op_OP_CONNECTED {
		t.Fatalf("connect: got %v", got)
	}
	return r, got
}

// send encodes env in the connection's codec, giving it the next id if it has none.
func (r *raw) send(env *protocol.Envelope) uint64 {
	r.t.Helper()
	if env.Id == 0 && env.Op != protocol.Op_OP_PONG {
		r.id++
		env.Id = r.id
	}
	b, err := r.codec.Append(nil, env)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendPayload(r.codec == protocol.CodecJSON, b)
	return env.Id
}

// sendPayload sends one frame: a WebSocket text or binary message, or a TCP frame.
func (r *raw) sendPayload(text bool, b []byte) {
	r.t.Helper()
	var err error
	if r.tcp {
		_, err = r.nc.Write(protocol.AppendTCPFrame(nil, b))
	} else {
		op := ws.OpBinary
		if text {
			op = ws.OpText
		}
		err = wsutil.WriteClientMessage(r.nc, op, b)
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next frame, or a closed error when the server closed.
func (r *raw) recv() (*protocol.Envelope, error) {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var payload []byte
	if r.tcp {
		b, err := protocol.ReadTCPFrame(r.br, nil, 1<<24)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return nil, closed{}
			}
			return nil, err
		}
		payload = b
	} else {
		for {
			// Frames are read by hand so that a close frame is reported, not answered.
			f, err := readWSFrame(r.br)
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
					return nil, closed{}
				}
				return nil, err
			}
			switch f.Header.OpCode {
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(f.Payload)
				return nil, closed{code: protocol.Code(code), reason: reason}
			case ws.OpText, ws.OpBinary:
				payload = f.Payload
			default:
				continue
			}
			break
		}
	}
	var env protocol.Envelope
	if err := protocol.DetectCodec(payload).Decode(payload, &env); err != nil {
		r.t.Fatalf("undecodable frame from server: %v: %q", err, payload)
	}
	return &env, nil
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// next returns the next frame and fails the test on close or error.
func (r *raw) next() *protocol.Envelope {
	r.t.Helper()
	env, err := r.recv()
	if err != nil {
		r.t.Fatalf("recv: %v", err)
	}
	return env
}

// call sends env and returns the frame answering its id, failing on anything else.
func (r *raw) call(env *protocol.Envelope) *protocol.Envelope {
	r.t.Helper()
	id := r.send(env)
	got := r.next()
	if got.Id != id {
		r.t.Fatalf("sent %s id %d, got %s id %d (%v)", env.Op.Name(), id, got.Op.Name(), got.Id, got)
	}
	return got
}

// expectDisconnect reads until the server's disconnect frame and close, and returns
// the disconnect frame's code (and checks a WebSocket close carries the same).
func (r *raw) expectDisconnect() (protocol.Code, string) {
	r.t.Helper()
	var code protocol.Code
	var reason string
	for {
		env, err := r.recv()
		if err != nil {
			var c closed
			if !errors.As(err, &c) {
				r.t.Fatalf("waiting for disconnect: %v", err)
			}
			if code == 0 {
				code, reason = c.code, c.reason
			} else if c.code != 0 && c.code != code {
				r.t.Errorf("disconnect frame code %d but close code %d", code, c.code)
			}
			if code == 0 {
				r.t.Fatal("connection closed without a code")
			}
			return code, reason
		}
		if env.Op == protocol.Op_OP_DISCONNECT {
			code, reason = protocol.Code(env.Code), env.Reason
			if env.Reconnect != code.Reconnect() {
				r.t.Errorf("disconnect %d says reconnect=%v", code, env.Reconnect)
			}
		}
	}
}

func dialTCP(n *servertest.Node) (net.Conn, error) {
	return net.DialTimeout("tcp", strings.TrimPrefix(n.TCP, "tcp://"), time.Second)
}

// readWSFrame reads one unmasked server frame, refusing absurd lengths.
func readWSFrame(br *bufio.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(br)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<24 {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(br, payload); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: payload}, nil
}
