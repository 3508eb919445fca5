package router

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/router/balancer"
	"github.com/heraldgg/herald/protocol"
)

// outcome is what one request of a load run got.
type outcome struct {
	user, id   string
	servedBy   string
	code       protocol.Code
	err        error
	afterOpen  bool // the request started after b's breaker had opened
	afterLeave bool // the request started after b left discovery
}

// load sends requests from workers goroutines, each cycling through its share
// of users, until stop is closed. Every request carries a unique id as data.
type load struct {
	e       *env
	route   string
	users   []string
	workers int

	opened, left atomic.Bool
	sent         atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
	mu           sync.Mutex
	results      []outcome
}

func (l *load) start() {
	l.stop = make(chan struct{})
	for w := range l.workers {
		l.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				user := l.users[(n*l.workers+w)%len(l.users)]
				id := fmt.Sprintf("%d-%d", w, n)
				o := outcome{user: user, id: id, afterOpen: l.opened.Load(), afterLeave: l.left.Load()}
				l.sent.Add(1)
				reply, err := l.e.request(l.route, user, id)
				o.err, o.code = err, codeOfErr(err)
				if err == nil {
					var data string
					o.servedBy, data = servedBy(reply)
					if data != id {
						o.err = fmt.Errorf("request %s got the reply of %q", id, data)
					}
				}
				l.mu.Lock()
				l.results = append(l.results, o)
				l.mu.Unlock()
			}
		})
	}
}

// waitSent waits until n more requests have been sent.
func (l *load) waitSent(t *testing.T, n int64) {
	t.Helper()
	target := l.sent.Load() + n
	waitFor(t, strconv.FormatInt(n, 10)+" more requests", func() bool { return l.sent.Load() >= target })
}

func (l *load) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	return l.results
}

// TestKillOneOfThree kills one of three instances under steady load while it
// is still registered (a crash, before its lease runs out), then removes it.
// Every request gets exactly one answer of its own; the dead instance's
// breaker opens; its players move to the survivors and the survivors' players
// stay where they were.
func TestKillOneOfThree(t *testing.T) {
	tests := []struct {
		name       string
		idempotent bool
	}{
		{"non-idempotent route", false},
		{"idempotent route", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := ServiceConfig{
				Balancer: balancer.Config{Policy: balancer.Hash},
				Breaker:  breaker.Config{ConsecutiveFailures: 3, Cooldown: 100 * time.Millisecond},
			}
			if tt.idempotent {
				sc.Idempotent = []string{"join"}
			}
			e := newEnv(t, roomConfig(sc))
			servers := map[string]*server{}
			leave := map[string]func(){}
			for _, id := range []string{"a", "b", "c"} {
				s := startGame(t, &game{id: id, seen: map[string]int{}})
				servers[id] = s
				leave[id] = e.register("room", id, s.addr, nil)
			}
			users := make([]string, 300)
			home := map[string]string{} // user → instance before the kill
			for i := range users {
				users[i] = "player-" + strconv.Itoa(i)
				reply, err := e.request("room.join", users[i], "hello")
				if err != nil {
					t.Fatalf("warm-up request: %v", err)
				}
				home[users[i]], _ = servedBy(reply)
			}

			l := &load{e: e, route: "room.join", users: users, workers: 8}
			l.start()
			l.waitSent(t, 300)
			servers["b"].srv.Stop()
			waitFor(t, "b's breaker to open", func() bool { return e.sawTransition("room/b", breaker.Open) })
			l.opened.Store(true)
			l.waitSent(t, 1000)
			leave["b"]()
			l.left.Store(true)
			l.waitSent(t, 500)
			results := l.finish()

			if int64(len(results)) != l.sent.Load() {
				t.Fatalf("%d requests sent, %d answered", l.sent.Load(), len(results))
			}
			var failed, afterOpen int
			for _, o := range results {
				if o.err != nil && o.code == 0 {
					t.Fatal(o.err) // a reply to another request
				}
				if o.err != nil {
					failed++
					if tt.idempotent {
						t.Errorf("request %s failed on an idempotent route: %v", o.id, o.err)
					} else if !errors.Is(o.err, ErrUnavailable) {
						t.Errorf("request %s failed with %v, want only unavailable (calls in flight on b)", o.id, o.err)
					}
					if o.afterOpen {
						t.Errorf("request %s started after b's breaker opened and still failed: %v", o.id, o.err)
					}
					continue
				}
				if !o.afterOpen {
					continue
				}
				afterOpen++
				switch was := home[o.user]; {
				case o.servedBy == "b":
					t.Errorf("request %s served by b after b died", o.id)
				case was != "b" && o.servedBy != was:
					t.Errorf("player %s of surviving instance %s moved to %s", o.user, was, o.servedBy)
				}
			}
			if afterOpen == 0 {
				t.Fatal("no request completed after the breaker opened")
			}
			t.Logf("%d requests, %d failed while b died (route idempotent: %v)", len(results), failed, tt.idempotent)

			// A non-idempotent request is never run twice.
			if !tt.idempotent {
				seen := map[string]string{}
				for id, s := range servers {
					s.mu.Lock()
					for data, n := range s.seen {
						if data == "hello" { // the warm-up, one per player
							continue
						}
						if n > 1 || seen[data] != "" {
							t.Errorf("request %s ran on %s and %s (%d times on %s)", data, seen[data], id, n, id)
						}
						seen[data] = id
					}
					s.mu.Unlock()
				}
			}
		})
	}
}

// TestCanaryThroughRouter: a canary tagged track=canary with a 5% weight gets
// 5% ± 1% of 10,000 requests across three stable instances.
func TestCanaryThroughRouter(t *testing.T) {
	e := newEnv(t, roomConfig(ServiceConfig{Balancer: balancer.Config{Policy: balancer.Weighted, Weights: map[string]int{"canary": 5}}}))
	for _, id := range []string{"stable-1", "stable-2", "stable-3", "canary"} {
		var tags map[string]string
		if id == "canary" {
			tags = map[string]string{"track": "canary"}
		}
		e.register("room", id, startGame(t, &game{id: id}).addr, tags)
	}
	const total, workers = 10_000, 8
	var canary, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := range total / workers {
				reply, err := e.request("room.join", "u"+strconv.Itoa(w*total+n), "x")
				if err != nil {
					failed.Add(1)
					continue
				}
				if id, _ := servedBy(reply); id == "canary" {
					canary.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	share := float64(canary.Load()) * 100 / total
	if share < 4 || share > 6 {
		t.Errorf("canary served %.2f%% of %d requests, want 5%% ± 1", share, total)
	}
	t.Logf("canary share %.2f%%", share)
}
