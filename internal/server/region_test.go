package server_test

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/server"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// regionMaps are the maps of the region tests: arena for broadcasts (no
// interest), field for enter and leave events, fast for conflated updates, and
// locked, where only the server may place sessions.
func regionMaps(c *config.Config) {
	c.Hub.Maps = map[string]hub.MapConfig{
		"arena":  {Width: 1000, Height: 1000, ClientMove: true},
		"field":  {Width: 1000, Height: 1000, ClientMove: true, Interest: true, InterestRadius: 100, CellSize: 50},
		"fast":   {Width: 1000, Height: 1000, ClientMove: true, Interest: true, InterestRadius: 100, Conflate: true},
		"locked": {Width: 100, Height: 100},
	}
}

// move sends a move and returns the answer.
func (r *raw) move(mapName string, x, y float64) *protocol.Envelope {
	r.t.Helper()
	return r.call(&protocol.Envelope{Op: protocol.Op_OP_MOVE, Map: mapName, X: x, Y: y})
}

// moveOK moves and checks the moved answer.
func (r *raw) moveOK(session, mapName string, x, y float64) {
	r.t.Helper()
	got := r.move(mapName, x, y)
	if got.Op != protocol.Op_OP_MOVED || got.Map != mapName || got.X != x || got.Y != y || got.Entity != session {
		r.t.Fatalf("move to %s (%g, %g): got %v", mapName, x, y, got)
	}
}

// until reads frames up to and including the first that matches stop, and
// returns the ones before it.
func (r *raw) until(stop func(*protocol.Envelope) bool) []*protocol.Envelope {
	r.t.Helper()
	var out []*protocol.Envelope
	for {
		env := r.next()
		if stop(env) {
			return out
		}
		out = append(out, env)
	}
}

func isData(want string) func(*protocol.Envelope) bool {
	return func(e *protocol.Envelope) bool { return e.Op == protocol.Op_OP_MSG && sameJSON(e.Data, []byte(want)) }
}

func wantCode(t *testing.T, got *protocol.Envelope, code protocol.Code) {
	t.Helper()
	if got.Op != protocol.Op_OP_ERROR || protocol.Code(got.Code) != code {
		t.Fatalf("want error %d, got %v", code, got)
	}
}

// adminErr posts body to path and returns the HTTP status and the error code.
func adminErr(t *testing.T, n *servertest.Node, path string, body any) (int, protocol.Code) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	st, resp := post(t, n.Admin+path, string(b), nil)
	var e struct{ Code uint32 }
	_ = json.Unmarshal([]byte(resp), &e)
	return st, protocol.Code(e.Code)
}

func TestMoveEveryTransportAndCodec(t *testing.T) {
	n := servertest.Start(t, regionMaps)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, hello := connect(t, n, v, "mover")
			r.moveOK(hello.Session, "arena", 10, 20)
			wantCode(t, r.move("arena", 1000, 5), protocol.CodeBadPosition) // width is exclusive
			wantCode(t, r.move("arena", -0.5, 5), protocol.CodeBadPosition)
			wantCode(t, r.move("nowhere", 1, 1), protocol.CodeNotFound)
			wantCode(t, r.move("locked", 1, 1), protocol.CodePermissionDenied)
			if v.codec == protocol.CodecProto { // JSON has no NaN or infinities
				wantCode(t, r.move("arena", math.NaN(), 1), protocol.CodeBadPosition)
				wantCode(t, r.move("arena", 1, math.Inf(1)), protocol.CodeBadPosition)
			}
			// The refused moves changed nothing: the session is still at (10, 20).
			data := fmt.Sprintf(`{"at":%q}`, v.name)
			if st := n.API(t, "/api/region", map[string]any{"map": "arena", "x": 10, "y": 20, "radius": 0.5,
				"data": json.RawMessage(data)}, nil); st != 200 {
				t.Fatalf("region: HTTP %d", st)
			}
			got := r.next()
			if got.Op != protocol.Op_OP_MSG || got.Kind != protocol.Kind_KIND_REGION || got.Map != "arena" ||
				got.X != 10 || got.Y != 20 || !sameJSON(got.Data, []byte(data)) {
				t.Fatalf("region message: %v", got)
			}
			// An empty map leaves it.
			if got := r.move("", 0, 0); got.Op != protocol.Op_OP_MOVED || got.Map != "" || got.Entity != hello.Session {
				t.Fatalf("leave: %v", got)
			}
		})
	}
}

// TestRegionReachesExactlyTheArea places one client of each transport and
// codec, broadcasts to circles and rectangles over the admin and gRPC APIs, and
// checks who got what: a broadcast covering everyone, sent after each one
// under test, marks the end of what each client can receive from it.
func TestRegionReachesExactlyTheArea(t *testing.T) {
	n := servertest.Start(t, regionMaps)
	type player struct {
		r       *raw
		session string
		x, y    float64
		off     bool // not on arena: gets no barrier
	}
	at := [][2]float64{{100, 100}, {150, 100}, {400, 400}, {100, 104}}
	ps := make([]player, len(variants))
	for i, v := range variants {
		r, hello := connect(t, n, v, "p"+v.name)
		ps[i] = player{r: r, session: hello.Session, x: at[i][0], y: at[i][1]}
		r.moveOK(hello.Session, "arena", at[i][0], at[i][1])
	}
	seq := 0
	// check sends one broadcast through send, then the barrier, and compares
	// who received the broadcast with want (indexes into ps).
	check := func(t *testing.T, send func(data string), want ...int) {
		t.Helper()
		seq++
		data, barrier := fmt.Sprintf(`{"n":%d}`, seq), fmt.Sprintf(`{"barrier":%d}`, seq)
		send(data)
		if st := n.API(t, "/api/region", map[string]any{"map": "arena", "x": 0, "y": 0, "w": 1000, "h": 1000,
			"data": json.RawMessage(barrier)}, nil); st != 200 {
			t.Fatalf("barrier: HTTP %d", st)
		}
		var got []int
		for i, p := range ps {
			if p.off {
				continue
			}
			for _, e := range p.r.until(isData(barrier)) {
				if !isData(data)(e) || e.Kind != protocol.Kind_KIND_REGION || e.Map != "arena" {
					t.Fatalf("%s: unexpected %v", variants[i].name, e)
				}
				got = append(got, i)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("reached %v, want %v", got, want)
		}
	}
	admin := func(body map[string]any) func(string) {
		return func(data string) {
			body["map"], body["data"] = "arena", json.RawMessage(data)
			if st := n.API(t, "/api/region", body, nil); st != 200 {
				t.Fatalf("region %v: HTTP %d", body, st)
			}
		}
	}
	api := grpcAPI(t, n, "")
	viaGRPC := func(req *protocol.BroadcastRegionRequest) func(string) {
		return func(data string) {
			req.Map, req.Data = "arena", []byte(data)
			if _, err := api.BroadcastRegion(t.Context(), req); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("circle, edge inclusive", func(t *testing.T) {
		check(t, admin(map[string]any{"x": 100, "y": 100, "radius": 50}), 0, 1, 3)
	})
	t.Run("circle excluding one", func(t *testing.T) {
		check(t, admin(map[string]any{"x": 100, "y": 100, "radius": 50, "exclude": ps[3].session}), 0, 1)
	})
	t.Run("rectangle, corner inclusive", func(t *testing.T) {
		check(t, admin(map[string]any{"x": 350, "y": 350, "w": 50, "h": 50}), 2)
	})
	t.Run("nobody", func(t *testing.T) {
		check(t, admin(map[string]any{"x": 700, "y": 700, "radius": 10}))
	})
	t.Run("grpc circle", func(t *testing.T) {
		check(t, viaGRPC(&protocol.BroadcastRegionRequest{X: 120, Y: 100, Area: &protocol.BroadcastRegionRequest_Radius{Radius: 30},
			Exclude: []string{ps[1].session}}), 0, 3)
	})
	t.Run("grpc rectangle away from its origin", func(t *testing.T) {
		check(t, viaGRPC(&protocol.BroadcastRegionRequest{X: 0, Y: 0,
			Area: &protocol.BroadcastRegionRequest_Rect{Rect: &protocol.Rect{MinX: 100, MinY: 101, MaxX: 150, MaxY: 104}}}), 3)
	})
	t.Run("moved out", func(t *testing.T) {
		ps[2].r.moveOK(ps[2].session, "arena", 900, 900)
		check(t, admin(map[string]any{"x": 400, "y": 400, "radius": 10}))
		check(t, admin(map[string]any{"x": 900, "y": 900, "radius": 10}), 2)
	})
	t.Run("moved to another map", func(t *testing.T) {
		ps[0].r.moveOK(ps[0].session, "field", 100, 100)
		ps[0].off = true
		check(t, admin(map[string]any{"x": 100, "y": 100, "radius": 50}), 1, 3)
		// Back on arena, the answer comes after anything arena sent before.
		ps[0].r.send(&protocol.Envelope{Op: protocol.Op_OP_MOVE, Map: "arena", X: 100, Y: 100})
		got := ps[0].r.until(func(e *protocol.Envelope) bool { return e.Op == protocol.Op_OP_MOVED })
		if len(got) != 0 {
			t.Fatalf("off arena, got %v", got)
		}
	})
}

// event is an enter, leave or moved frame in short, for comparing sequences.
func event(e *protocol.Envelope) string {
	switch e.Op {
	case protocol.Op_OP_ENTER:
		return fmt.Sprintf("enter %s %s (%g, %g) %s", e.Map, e.Entity, e.X, e.Y, e.User)
	case protocol.Op_OP_LEAVE:
		return fmt.Sprintf("leave %s %s", e.Map, e.Entity)
	case protocol.Op_OP_MOVED:
		return fmt.Sprintf("moved %s %s (%g, %g)", e.Map, e.Entity, e.X, e.Y)
	}
	return e.Op.Name()
}

// pong reads up to the answer to a ping, returning the frames before it. A
// ping sent after a frame was queued for this session is answered after it.
func (r *raw) pong() []*protocol.Envelope {
	r.t.Helper()
	id := r.send(&protocol.Envelope{Op: protocol.Op_OP_PING})
	return r.until(func(e *protocol.Envelope) bool { return e.Op == protocol.Op_OP_PONG && e.Id == id })
}

// TestInterestEvents moves two clients toward and away from each other on a
// map with interest and checks the enter, leave and update frames each gets,
// in order, then disconnects one.
func TestInterestEvents(t *testing.T) {
	n := servertest.Start(t, regionMaps)
	for _, pair := range [][2]variant{{variants[0], variants[3]}, {variants[1], variants[2]}} {
		t.Run(pair[0].name+"+"+pair[1].name, func(t *testing.T) {
			a, ha := connect(t, n, pair[0], "alice")
			b, hb := connect(t, n, pair[1], "bob")
			A, B := ha.Session, hb.Session
			// seen reads what arrived up to the answer of a ping. The mover's own
			// events follow its moved answer; the other's may still be on their way
			// to it, so each reads until it has as many as expected.
			seen := func(r *raw, want ...string) {
				t.Helper()
				var got []string
				for len(got) < len(want) {
					for _, e := range r.pong() {
						got = append(got, event(e))
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got %q\nwant %q", got, want)
				}
			}
			a.moveOK(A, "field", 100, 100)
			b.moveOK(B, "field", 500, 500)
			b.moveOK(B, "field", 300, 100) // 200 away: still out of sight
			b.moveOK(B, "field", 200, 100) // exactly 100 away: in sight
			seen(b, "enter field "+A+" (100, 100) alice")
			seen(a, "enter field "+B+" (200, 100) bob")
			b.moveOK(B, "field", 190, 110)
			seen(a, "moved field "+B+" (190, 110)")
			a.moveOK(A, "field", 100, 110)
			seen(b, "moved field "+A+" (100, 110)")
			b.moveOK(B, "field", 400, 100)
			seen(b, "leave field "+A)
			seen(a, "leave field "+B)
			b.moveOK(B, "field", 150, 110)
			seen(b, "enter field "+A+" (100, 110) alice")
			seen(a, "enter field "+B+" (150, 110) bob")
			// Leaving the map: the other sees it leave, and the leaver is told
			// whom it no longer sees.
			if got := b.move("", 0, 0); got.Op != protocol.Op_OP_MOVED || got.Map != "" {
				t.Fatalf("leave the map: %v", got)
			}
			seen(b, "leave field "+A)
			seen(a, "leave field "+B)
			b.moveOK(B, "field", 150, 110)
			seen(b, "enter field "+A+" (100, 110) alice")
			seen(a, "enter field "+B+" (150, 110) bob")
			// A disconnect takes the session off the map at once.
			_ = b.nc.Close()
			seen(a, "leave field "+B)
			servertest.Eventually(t, 5*time.Second, "field holds alice alone", func() bool {
				var st server.Stats
				n.Get(t, "/api/stats", &st)
				return st.Maps["field"].Sessions == 1
			})
			a.moveOK(A, "", 0, 0)
		})
	}
}

// TestConflation lets a client fall behind while a neighbour moves many times
// on a conflated map: it must receive only a few of the updates, the last one
// last, and stay connected.
func TestConflation(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		regionMaps(c)
		c.Session.MaxQueueBytes = 64 << 20
		c.Gateway.MessageRate = 1e6
		c.Gateway.MessageBurst = 1e6
	})
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			slow := dialSmall(t, n, v)
			sid := sessionOf(t, slow)
			mover, hm := connect(t, n, variants[(i+1)%len(variants)], "mover")
			x := 100.0 + 200*float64(i)
			slow.moveOK(sid, "fast", x, 100)
			mover.moveOK(hm.Session, "fast", x+10, 100)
			if e := slow.next(); e.Op != protocol.Op_OP_ENTER || e.Entity != hm.Session {
				t.Fatalf("slow client: %v", e)
			}
			if e := mover.next(); e.Op != protocol.Op_OP_ENTER || e.Entity != sid {
				t.Fatalf("mover: %v", e)
			}
			// Fill the slow client's socket so that what follows waits in its queue.
			big := json.RawMessage(`"` + strings.Repeat("x", 60000) + `"`)
			for range 100 {
				if st := n.API(t, "/api/push", map[string]any{"session": sid, "data": big}, nil); st != 200 {
					t.Fatalf("push: HTTP %d", st)
				}
			}
			var before server.Stats
			n.Get(t, "/api/stats", &before)
			moves := 0
			for {
				moves++
				mover.moveOK(hm.Session, "fast", x+10+float64(moves%50)/10, 100)
				if moves%100 != 0 {
					continue
				}
				var st server.Stats
				n.Get(t, "/api/stats", &st)
				if st.Conflated > before.Conflated+50 {
					break
				}
				if moves > 20000 {
					t.Fatal("nothing conflated")
				}
			}
			last := x + 10 + float64(moves%50)/10
			if st := n.API(t, "/api/region", map[string]any{"map": "fast", "x": x, "y": 100, "radius": 1,
				"data": json.RawMessage(`"end"`)}, nil); st != 200 {
				t.Fatalf("region: HTTP %d", st)
			}
			var updates []*protocol.Envelope
			for _, e := range slow.until(isData(`"end"`)) {
				if e.Op == protocol.Op_OP_MOVED {
					updates = append(updates, e)
				}
			}
			if len(updates) == 0 || len(updates) >= moves {
				t.Fatalf("%d updates for %d moves", len(updates), moves)
			}
			if u := updates[len(updates)-1]; u.X != last {
				t.Fatalf("last update at %g, want %g", u.X, last)
			}
			t.Logf("%d moves reached the slow client as %d updates", moves, len(updates))
		})
	}
}

// sessionOf finds the session id of a connected raw client: the answer to a
// move names it.
func sessionOf(t *testing.T, r *raw) string {
	t.Helper()
	got := r.move("", 0, 0)
	if got.Op != protocol.Op_OP_MOVED || got.Entity == "" {
		t.Fatalf("move answer: %v", got)
	}
	return got.Entity
}

// TestServerPlacement places a client through the admin API, where clients
// may not move, and takes it off again.
func TestServerPlacement(t *testing.T) {
	n := servertest.Start(t, regionMaps)
	api := grpcAPI(t, n, "")
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, hello := connect(t, n, v, "")
			place := func(body map[string]any) {
				body["session"] = hello.Session
				if st := n.API(t, "/api/position", body, nil); st != 200 {
					t.Fatalf("position: HTTP %d", st)
				}
			}
			if i%2 == 0 {
				place(map[string]any{"map": "locked", "x": 5, "y": 6})
			} else if _, err := api.SetPosition(t.Context(), &protocol.SetPositionRequest{Session: hello.Session, Map: "locked", X: 5, Y: 6}); err != nil {
				t.Fatal(err)
			}
			if got := r.next(); got.Op != protocol.Op_OP_MOVED || got.Id != 0 || got.Map != "locked" || got.X != 5 || got.Y != 6 || got.Entity != hello.Session {
				t.Fatalf("placement: %v", got)
			}
			n.API(t, "/api/region", map[string]any{"map": "locked", "x": 5, "y": 6, "radius": 1, "data": 1}, nil)
			if got := r.next(); got.Kind != protocol.Kind_KIND_REGION || !sameJSON(got.Data, []byte("1")) {
				t.Fatalf("region: %v", got)
			}
			place(map[string]any{"map": ""})
			if got := r.next(); got.Op != protocol.Op_OP_MOVED || got.Map != "" {
				t.Fatalf("taken off: %v", got)
			}
			n.API(t, "/api/region", map[string]any{"map": "locked", "x": 5, "y": 6, "radius": 1, "data": 2}, nil)
			// Placed back, the client gets the answer after anything the map sent
			// it before: the region message, had it been sent.
			place(map[string]any{"map": "locked", "x": 5, "y": 6})
			if got := r.until(func(e *protocol.Envelope) bool { return e.Op == protocol.Op_OP_MOVED }); len(got) != 0 {
				t.Fatalf("off the map, got %v", got)
			}
		})
	}
}

// TestRegionBadInput checks the errors for areas and positions no session can
// be in, through both doors of the server API.
func TestRegionBadInput(t *testing.T) {
	n := servertest.Start(t, regionMaps)
	r, hello := connect(t, n, variants[0], "")
	r.moveOK(hello.Session, "arena", 1, 1)
	cases := []struct {
		name   string
		path   string
		body   map[string]any
		status int
		code   protocol.Code
	}{
		{"unknown map", "/api/region", map[string]any{"map": "nowhere", "radius": 1}, 404, protocol.CodeNotFound},
		{"negative radius", "/api/region", map[string]any{"map": "arena", "radius": -1}, 400, protocol.CodeBadPosition},
		{"no area", "/api/region", map[string]any{"map": "arena"}, 400, protocol.CodeBadRequest},
		{"radius and rectangle", "/api/region", map[string]any{"map": "arena", "radius": 1, "w": 1, "h": 1}, 400, protocol.CodeBadRequest},
		{"negative width", "/api/region", map[string]any{"map": "arena", "w": -1, "h": 1}, 400, protocol.CodeBadPosition},
		{"no map", "/api/region", map[string]any{"radius": 1}, 400, protocol.CodeBadRequest},
		{"position off the map", "/api/position", map[string]any{"session": hello.Session, "map": "arena", "x": 1000}, 400, protocol.CodeBadPosition},
		{"position on an unknown map", "/api/position", map[string]any{"session": hello.Session, "map": "nowhere"}, 404, protocol.CodeNotFound},
		{"position without a session", "/api/position", map[string]any{"map": "arena"}, 400, protocol.CodeBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, code := adminErr(t, n, tc.path, tc.body)
			if st != tc.status || code != tc.code {
				t.Fatalf("HTTP %d code %d, want %d code %d", st, code, tc.status, tc.code)
			}
		})
	}
	api := grpcAPI(t, n, "")
	grpcCases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"NaN origin", func() error {
			_, err := api.BroadcastRegion(t.Context(), &protocol.BroadcastRegionRequest{Map: "arena", X: math.NaN(),
				Area: &protocol.BroadcastRegionRequest_Radius{Radius: 1}})
			return err
		}, codes.InvalidArgument},
		{"infinite radius", func() error {
			_, err := api.BroadcastRegion(t.Context(), &protocol.BroadcastRegionRequest{Map: "arena",
				Area: &protocol.BroadcastRegionRequest_Radius{Radius: math.Inf(1)}})
			return err
		}, codes.InvalidArgument},
		{"inverted rectangle", func() error {
			_, err := api.BroadcastRegion(t.Context(), &protocol.BroadcastRegionRequest{Map: "arena",
				Area: &protocol.BroadcastRegionRequest_Rect{Rect: &protocol.Rect{MinX: 5, MaxX: 4, MaxY: 1}}})
			return err
		}, codes.InvalidArgument},
		{"unknown map", func() error {
			_, err := api.BroadcastRegion(t.Context(), &protocol.BroadcastRegionRequest{Map: "nowhere",
				Area: &protocol.BroadcastRegionRequest_Radius{Radius: 1}})
			return err
		}, codes.NotFound},
		{"NaN position", func() error {
			_, err := api.SetPosition(t.Context(), &protocol.SetPositionRequest{Session: hello.Session, Map: "arena", Y: math.NaN()})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range grpcCases {
		t.Run("grpc "+tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("code %v, want %v", got, tc.want)
			}
		})
	}
	// None of it moved the session: it is still where it was.
	n.API(t, "/api/region", map[string]any{"map": "arena", "x": 1, "y": 1, "radius": 0.5, "data": 7}, nil)
	if got := r.next(); got.Kind != protocol.Kind_KIND_REGION || !sameJSON(got.Data, []byte("7")) {
		t.Fatalf("region: %v", got)
	}
}
