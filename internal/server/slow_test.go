package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// smallBuffers makes the kernel hold little for a client that does not read, so a
// test reaches the server's queue bound quickly.
func smallBuffers(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}

func dialSmall(t *testing.T, n *servertest.Node, v variant) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &net.Dialer{Control: smallBuffers}
	r := &raw{t: t, tcp: v.tcp, codec: v.codec}
	if v.tcp {
		nc, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(n.TCP, "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		r.nc, r.br = nc, bufio.NewReader(nc)
	} else {
		wd := ws.Dialer{NetDial: d.DialContext}
		nc, br, _, err := wd.Dial(ctx, n.WS)
		if err != nil {
			t.Fatal(err)
		}
		r.nc, r.br = nc, br
		if br == nil {
			r.br = bufio.NewReader(nc)
		}
	}
	t.Cleanup(func() { _ = r.nc.Close() })
	if got := r.call(&protocol.Envelope{Op: protocol.Op_OP_CONNECT}); got.Op != protocol.Op_OP_CONNECTED {
		t.Fatalf("connect: %v", got)
	}
	return r
}

// TestSlowConsumer checks that a client that stops reading is disconnected with the
// slow-consumer code once its queue passes the bound, and that a healthy subscriber
// of the same topic receives every message meanwhile.
func TestSlowConsumer(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Transport.MaxFrameSize = 8 << 10
		c.Session.MaxQueueBytes = 256 << 10
		c.Gateway.MessageRate = 1e6
		c.Gateway.MessageBurst = 1e6
	})
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			topic := fmt.Sprintf("chat.firehose%d", i)
			slow := dialSmall(t, n, v)
			slow.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: topic})
			healthy, _ := connect(t, n, variants[(i+1)%len(variants)], "")
			healthy.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: topic})
			pub, _ := connect(t, n, variants[3], "")

			var before server.Stats
			n.Get(t, "/api/stats", &before)
			const total = 1200
			data := []byte(`"` + strings.Repeat("x", 4000) + `"`)
			// Lockstep: each message is published once the healthy subscriber has the
			// previous one, so it never lags while the slow one falls further behind.
			for want := uint64(1); want <= total; want++ {
				if ack := pub.call(&protocol.Envelope{Op: protocol.Op_OP_PUB, Topic: topic, Data: data}); ack.Op != protocol.Op_OP_PUBLISHED {
					t.Fatalf("publisher: %v", ack)
				}
				if env := healthy.next(); env.Op != protocol.Op_OP_MSG || env.Offset != want {
					t.Fatalf("healthy subscriber: want offset %d, got %v", want, env)
				}
			}
			servertest.Eventually(t, 10*time.Second, "slow consumer counted", func() bool {
				var st server.Stats
				n.Get(t, "/api/stats", &st)
				return st.SlowConsumers > before.SlowConsumers
			})
			if code, _ := slow.expectDisconnect(); code != protocol.DisconnectSlowConsumer {
				t.Fatalf("slow client: code %d", code)
			}
		})
	}
}
