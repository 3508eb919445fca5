package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// TestBadInputErrorFrames covers input that gets an error frame and leaves the
// connection open.
func TestBadInputErrorFrames(t *testing.T) {
	n := servertest.Start(t, nil)
	cases := []struct {
		name  string
		only  string // "json" or "protobuf"; empty: every codec
		frame func(r *raw)
		code  protocol.Code
	}{
		{"malformed json", "json", func(r *raw) { r.sendPayload(true, []byte(`{"op":"sub","id":`)) }, protocol.CodeBadRequest},
		{"json not an object", "json", func(r *raw) { r.sendPayload(true, []byte(`{"op":["sub"]}`)) }, protocol.CodeBadRequest},
		{"malformed proto", "protobuf", func(r *raw) { r.sendPayload(false, []byte{0x08, 0xff, 0xff, 0xff}) }, protocol.CodeBadRequest},
		{"unknown json op", "json", func(r *raw) { r.sendPayload(true, []byte(`{"op":"dance","id":9}`)) }, protocol.CodeUnknownOp},
		{"unknown proto op", "protobuf", func(r *raw) { r.sendPayload(false, []byte{0x08, 0x63, 0x10, 0x09}) }, protocol.CodeUnknownOp},
		{"server-only op", "", func(r *raw) { r.send(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: "x"}) }, protocol.CodeUnknownOp},
		{"connect twice", "", func(r *raw) { r.send(&protocol.Envelope{Op: protocol.Op_OP_CONNECT}) }, protocol.CodeAlreadyConnected},
		{"forbidden pub", "", func(r *raw) {
			r.send(&protocol.Envelope{Op: protocol.Op_OP_PUB, Topic: "admin.news", Data: []byte(`1`)})
		}, protocol.CodePermissionDenied},
		{"topic with space", "", func(r *raw) { r.send(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "a b"}) }, protocol.CodeBadTopic},
		{"empty topic", "", func(r *raw) { r.send(&protocol.Envelope{Op: protocol.Op_OP_SUB}) }, protocol.CodeBadTopic},
		{"topic too long", "", func(r *raw) { r.send(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: strings.Repeat("t", 300)}) }, protocol.CodeBadTopic},
		{"sub twice", "", func(r *raw) {
			r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "twice"})
			r.send(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "twice"})
		}, protocol.CodeAlreadySubscribed},
	}
	for _, v := range variants {
		for _, c := range cases {
			if c.only != "" && c.only != v.codec.String() {
				continue
			}
			t.Run(v.name+"/"+c.name, func(t *testing.T) {
				r, _ := connect(t, n, v, "")
				c.frame(r)
				e := r.next()
				if e.Op != protocol.Op_OP_ERROR || e.Code != uint32(c.code) || e.Reason == "" {
					t.Fatalf("got %v, want error %d", e, c.code)
				}
				if p := r.call(&protocol.Envelope{Op: protocol.Op_OP_PING}); p.Op != protocol.Op_OP_PONG {
					t.Fatalf("connection unusable after the error: %v", p)
				}
			})
		}
	}
	t.Run("first frame not connect", func(t *testing.T) {
		for _, v := range variants {
			r := dialRaw(t, n, v)
			e := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "x"})
			if e.Op != protocol.Op_OP_ERROR || e.Code != uint32(protocol.CodeNotConnected) {
				t.Fatalf("%s: %v", v.name, e)
			}
		}
	})
	var st server.Stats
	n.Get(t, "/api/stats", &st)
	if st.BadFrames == 0 {
		t.Errorf("bad frames not counted: %+v", st)
	}
}

// TestBadInputCloses covers input that ends the connection with a documented code,
// while a bystander on the same node keeps receiving.
func TestBadInputCloses(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Transport.MaxFrameSize = 4096 })
	bystander, _ := connect(t, n, variants[0], "bystander")
	bystander.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "news"})

	big := append([]byte(`{"op":"pub","topic":"chat.x","data":"`), bytes.Repeat([]byte("a"), 5000)...)
	big = append(big, `"}`...)
	hugePrefix := binary.BigEndian.AppendUint32(nil, 0xFFFFFFF0)
	cases := []struct {
		name string
		v    variant
		do   func(r *raw)
		code protocol.Code
	}{
		{"ws text not utf-8", variants[0], func(r *raw) { r.sendPayload(true, []byte("{\"op\":\"ping\",\"id\":1,\"x\":\"\xff\xfe\"}")) }, protocol.DisconnectInvalidUTF8},
		// nbio enforces the WebSocket message limit itself and closes with 1009.
		{"ws frame over limit", variants[0], func(r *raw) { r.sendPayload(true, big) }, 1009},
		{"tcp frame over limit", variants[2], func(r *raw) { r.sendPayload(true, big) }, protocol.DisconnectFrameTooLarge},
		{"tcp length prefix huge", variants[3], func(r *raw) {
			if _, err := r.nc.Write(hugePrefix); err != nil {
				t.Fatal(err)
			}
		}, protocol.DisconnectFrameTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := connect(t, n, c.v, "")
			c.do(r)
			code, reason := r.expectDisconnect()
			if c.v.tcp {
				// TCP has no close frame: the code arrives in the disconnect frame.
				if code != c.code || reason == "" {
					t.Fatalf("got %d %q, want %d", code, reason, c.code)
				}
				return
			}
			if code != c.code {
				t.Fatalf("got %d %q, want %d", code, reason, c.code)
			}
		})
	}
	var pos struct{ Offset uint64 }
	n.API(t, "/api/publish", map[string]any{"topic": "news", "data": "still here"}, &pos)
	if e := bystander.next(); e.Op != protocol.Op_OP_MSG || e.Offset != pos.Offset {
		t.Fatalf("bystander: %v", e)
	}
}

// TestWebSocketDetails covers WebSocket control frames and the upgrade's origin check.
func TestWebSocketDetails(t *testing.T) {
	n := servertest.Start(t, nil)
	t.Run("ping control frames never hold replies", func(t *testing.T) {
		r, _ := connect(t, n, variants[0], "")
		for i := range 50 {
			if err := wsutil.WriteClientMessage(r.nc, ws.OpPing, []byte("p")); err != nil {
				t.Fatal(err)
			}
			if p := r.call(&protocol.Envelope{Op: protocol.Op_OP_PING}); p.Op != protocol.Op_OP_PONG {
				t.Fatalf("round %d: %v", i, p)
			}
		}
	})
	t.Run("client close is echoed", func(t *testing.T) {
		r, _ := connect(t, n, variants[1], "")
		if err := wsutil.WriteClientMessage(r.nc, ws.OpClose, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")); err != nil {
			t.Fatal(err)
		}
		if code, _ := r.expectDisconnect(); code != protocol.Code(ws.StatusGoingAway) {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("any origin by default", func(t *testing.T) {
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://game.example"}})}
		c, _, _, err := d.Dial(context.Background(), n.WS)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("listed origins only", func(t *testing.T) {
		n := servertest.Start(t, func(c *config.Config) { c.Transport.AllowedOrigins = []string{"https://game.example"} })
		ok := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://game.example"}})}
		c, _, _, err := ok.Dial(context.Background(), n.WS)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		bad := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://evil.example"}})}
		if c, _, _, err := bad.Dial(context.Background(), n.WS); err == nil {
			c.Close()
			t.Fatal("a page of another origin could connect")
		}
	})
}

// TestHandshakeTimeout checks that a connection that never completes its HTTP
// upgrade is closed after transport.handshake_timeout.
func TestHandshakeTimeout(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Transport.HandshakeTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the half-sent upgrade was not closed: %v", err)
	}
}
