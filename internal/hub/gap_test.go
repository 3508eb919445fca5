package hub

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// TestGapDisconnects feeds a topic's publications with offsets missing, as a
// broker delivers them when its history no longer held what it missed: a
// subscriber must not receive the rest as if nothing happened, but be
// disconnected so that it resubscribes and learns recovery failed. A lossy
// topic's subscriber takes the gap, as it takes dropped messages.
func TestGapDisconnects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lossy   bool
		epoch   string // of the publication after the gap
		offsets []uint64
		want    []uint64 // offsets delivered before the end or the disconnect
		cut     bool
	}{
		{name: "contiguous", epoch: "e", offsets: []uint64{1, 2, 3}, want: []uint64{1, 2, 3}},
		{name: "repeat", epoch: "e", offsets: []uint64{1, 2, 2, 3}, want: []uint64{1, 2, 3}},
		{name: "gap", epoch: "e", offsets: []uint64{1, 2, 4}, want: []uint64{1, 2}, cut: true},
		{name: "new epoch from 1", epoch: "f", offsets: []uint64{1, 2}, want: []uint64{1, 2}},
		{name: "new epoch past 1", epoch: "f", offsets: []uint64{3}, cut: true},
		{name: "lossy gap", lossy: true, epoch: "e", offsets: []uint64{1, 2, 4}, want: []uint64{1, 2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Shards: 2}
			if tc.lossy {
				cfg.LossyTopics = []string{"t"}
			}
			h := New(cfg, nopBroker{}, time.Hour, slog.New(slog.DiscardHandler))
			h.Start()
			t.Cleanup(h.Close)
			s := addRec(h, 1)
			if err := h.Subscribe(context.Background(), s.Session, "t"); err != nil {
				t.Fatal(err)
			}
			h.CompleteSubscribe(s.Session, "t", session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_SUBSCRIBED, Topic: "t"}), nil, 0, "e")
			for i, o := range tc.offsets {
				epoch := "e"
				if i == len(tc.offsets)-1 || tc.epoch != "e" {
					epoch = tc.epoch
				}
				f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: "t", Offset: o, Epoch: epoch, Data: []byte(`1`)})
				f.Offset = o
				h.Publication("t", f)
			}
			// A final frame marks the end: the disconnect, or a push.
			h.PushSession(s.ID, session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Kind: protocol.Kind_KIND_PUSH}))
			var got []uint64
			var code protocol.Code
			s.conn.wait(t, "the end", func(fs []*protocol.Envelope) bool {
				got, code = nil, 0
				for _, f := range fs {
					switch {
					case f.Op == protocol.Op_OP_MSG && f.Kind == protocol.Kind_KIND_TOPIC:
						got = append(got, f.Offset)
					case f.Op == protocol.Op_OP_DISCONNECT:
						code = protocol.Code(f.Code)
						return true
					case f.Kind == protocol.Kind_KIND_PUSH:
						return true
					}
				}
				return false
			})
			if len(got) != len(tc.want) {
				t.Fatalf("delivered %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("delivered %v, want %v", got, tc.want)
				}
			}
			switch {
			case tc.cut && code != protocol.DisconnectInsufficientState:
				t.Fatalf("disconnect code %d, want %d", code, protocol.DisconnectInsufficientState)
			case !tc.cut && code != 0:
				t.Fatalf("disconnected with %d", code)
			}
		})
	}
}
