package etcd

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/discoverytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions()...)
}

// testTTL is the shortest lease etcd grants with its default timing (1.5 ×
// its 1 s election timeout, rounded up to whole seconds).
const testTTL = 2 * time.Second

// newRegistry returns a Registry on s under prefix, closed when the test ends.
func newRegistry(t *testing.T, s *testEtcd, prefix string) *Registry {
	t.Helper()
	r, err := New(Config{
		Endpoints:      []string{s.endpoint()},
		Prefix:         prefix,
		LeaseTTL:       testTTL,
		RequestTimeout: 2 * time.Second,
	}, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// rawClient is a plain etcd client for inspecting and tampering with keys.
func rawClient(t *testing.T, s *testEtcd) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientConfig(Config{Endpoints: []string{s.endpoint()}}.WithDefaults()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func register(t *testing.T, r *Registry, in discovery.Instance) func(context.Context) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), discoverytest.WaitTimeout)
	defer cancel()
	deregister, err := r.Register(ctx, in)
	if err != nil {
		t.Fatalf("Register(%s/%s): %v", in.Service, in.ID, err)
	}
	return deregister
}

// waitUntil polls cond until it holds or the deadline passes. For conditions
// that no callback reports, such as the state of a key in etcd.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		<-tick.C
	}
}

func TestConformance(t *testing.T) {
	s := startEtcd(t)
	discoverytest.Run(t, func(t *testing.T) discovery.Registry {
		// A prefix per subtest keeps subtests from seeing each other's keys.
		return newRegistry(t, s, "/herald-test/"+strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	})
}

func TestNewDoesNoIO(t *testing.T) {
	// Nothing listens on port 1; New must still succeed at once.
	r, err := New(Config{Endpoints: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr bool
	}{
		{
			name: "zero value is every default",
			want: Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/herald", LeaseTTL: 10 * time.Second, DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second},
		},
		{
			name: "trailing slash trimmed",
			cfg:  Config{Prefix: "/game/"},
			want: Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/game", LeaseTTL: 10 * time.Second, DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second},
		},
		{name: "relative prefix", cfg: Config{Prefix: "herald"}, wantErr: true},
		{name: "negative ttl", cfg: Config{LeaseTTL: -time.Second}, wantErr: true},
		{name: "empty endpoint", cfg: Config{Endpoints: []string{""}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if _, err := New(tc.cfg, nil); !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("New error = %v, want ErrInvalidConfig", err)
				}
				return
			}
			got := tc.cfg.WithDefaults()
			if got.Prefix != tc.want.Prefix || got.LeaseTTL != tc.want.LeaseTTL || got.DialTimeout != tc.want.DialTimeout ||
				got.RequestTimeout != tc.want.RequestTimeout || strings.Join(got.Endpoints, ",") != strings.Join(tc.want.Endpoints, ",") {
				t.Errorf("WithDefaults() = %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := (Config{LeaseTTL: 1500 * time.Millisecond}).leaseSeconds(); got != 2 {
		t.Errorf("leaseSeconds(1.5s) = %d, want 2 (rounded up)", got)
	}
}

// An instance whose process dies without deregistering disappears once its
// lease runs out.
func TestDeadInstanceExpires(t *testing.T) {
	s := startEtcd(t)
	watcher := newRegistry(t, s, "/herald")
	dying := newRegistry(t, s, "/herald")
	w := discoverytest.Record(t, watcher, "room")

	in := discovery.Instance{Service: "room", ID: "room-1", Addr: "127.0.0.1:9001"}
	register(t, dying, in)
	w.WaitFor(t, "room-1", discoverytest.IsSet(in))

	died := time.Now()
	if err := dying.close(false); err != nil {
		t.Fatalf("abandon: %v", err)
	}
	w.WaitFor(t, "room-1 gone after its lease expired", discoverytest.IsSet())
	// etcd checks for expired leases every 500 ms and deletes through raft,
	// so allow a little beyond the TTL.
	if took := time.Since(died); took > testTTL+1500*time.Millisecond {
		t.Errorf("room-1 disappeared %v after its process died, want within its %v lease", took, testTTL)
	} else {
		t.Logf("room-1 disappeared %v after its process died (lease %v)", took, testTTL)
	}
}

// While etcd is down, Watch keeps the last set (a watch started meanwhile
// delivers nothing) and picks up changes once etcd is back.
func TestWatchSurvivesEtcdRestart(t *testing.T) {
	s := startEtcd(t)
	r := newRegistry(t, s, "/herald")
	a := discovery.Instance{Service: "room", ID: "room-a", Addr: "127.0.0.1:9001"}
	register(t, r, a)
	w := discoverytest.Record(t, r, "room")
	w.WaitFor(t, "room-a", discoverytest.IsSet(a))

	t.Log(time.Now().Format("05.000"), "stopping")
	s.stop()
	t.Log(time.Now().Format("05.000"), "stopped")
	before := len(w.Sets())
	late := &countingWatch{}
	lateCtx, cancelLate := context.WithCancel(context.Background())
	lateDone := make(chan error, 1)
	go func() { lateDone <- r.Watch(lateCtx, "room", late.deliver) }()
	// The scenario needs etcd gone for a while; what is asserted below does
	// not depend on how long.
	time.Sleep(3 * time.Second)
	if n := len(w.Sets()) - before; n != 0 {
		t.Errorf("Watch delivered %d sets while etcd was down, want none: %v", n, w.Sets()[before:])
	}
	if n := late.calls.Load(); n != 0 {
		t.Errorf("a Watch started while etcd was down delivered %d sets, want none", n)
	}
	t.Log(time.Now().Format("05.000"), "starting")
	s.start(t)
	t.Log(time.Now().Format("05.000"), "started")
	t.Cleanup(func() { t.Log(time.Now().Format("05.000"), "cleanup begins") })

	b := discovery.Instance{Service: "room", ID: "room-b", Addr: "127.0.0.1:9002"}
	other := newRegistry(t, s, "/herald")
	register(t, other, b)
	t.Log(time.Now().Format("05.000"), "registered b")
	w.WaitFor(t, "room-a and room-b after etcd returned", discoverytest.IsSet(a, b))
	t.Log(time.Now().Format("05.000"), "saw b")
	for i, set := range w.Sets() {
		if len(set) == 0 {
			t.Errorf("set %d is empty: Watch reported room-a gone", i)
		}
	}
	waitUntil(t, discoverytest.WaitTimeout, "late watch delivers", func() bool { return late.calls.Load() > 0 })
	cancelLate()
	if err := <-lateDone; !errors.Is(err, context.Canceled) {
		t.Errorf("late Watch returned %v", err)
	}
}

// A registration outlives an etcd outage longer than its lease TTL: the
// client gives the lease up, and the registration puts itself back under a
// fresh lease once etcd returns.
func TestRegistrationSurvivesEtcdRestart(t *testing.T) {
	s := startEtcd(t)
	r := newRegistry(t, s, "/herald")
	in := discovery.Instance{Service: "room", ID: "room-1", Addr: "127.0.0.1:9001"}
	register(t, r, in)
	raw := rawClient(t, s)
	key := discovery.Key("/herald", "room", "room-1")
	firstLease := keyLease(t, raw, key)
	if firstLease == 0 {
		t.Fatal("registered key has no lease")
	}

	s.stop()
	// Longer than the TTL, so the client's keepalive deadline passes and the
	// registration has to start over.
	time.Sleep(testTTL + 2*time.Second)
	s.start(t)

	waitUntil(t, discoverytest.WaitTimeout, "key re-registered under a new lease", func() bool {
		l := keyLease(t, raw, key)
		return l > 0 && l != firstLease
	})
	// After the old lease is surely gone, the key must still be there and
	// alive: its new lease is kept alive.
	waitUntil(t, discoverytest.WaitTimeout, "old lease gone", func() bool { return leaseTTL(t, raw, firstLease) == -1 })
	next := keyLease(t, raw, key)
	waitUntil(t, discoverytest.WaitTimeout, "new lease renewed", func() bool { return leaseTTL(t, raw, next) >= int64(testTTL/time.Second)-1 })
	if got := keyLease(t, raw, key); got != next {
		t.Errorf("key lease = %x, want %x", got, next)
	}
}

// A lease lost while etcd stays up (here revoked behind the registry's back,
// as if it had expired) is replaced at once.
func TestLostLeaseReregisters(t *testing.T) {
	s := startEtcd(t)
	r := newRegistry(t, s, "/herald")
	w := discoverytest.Record(t, r, "room")
	in := discovery.Instance{Service: "room", ID: "room-1", Addr: "127.0.0.1:9001"}
	register(t, r, in)
	w.WaitFor(t, "room-1", discoverytest.IsSet(in))

	raw := rawClient(t, s)
	key := discovery.Key("/herald", "room", "room-1")
	lease := keyLease(t, raw, key)
	if _, err := raw.Revoke(context.Background(), clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, discoverytest.WaitTimeout, "key back under a new lease", func() bool {
		l := keyLease(t, raw, key)
		return l > 0 && l != lease
	})
	w.WaitFor(t, "room-1 present", discoverytest.IsSet(in))
}

// An older registration that loses its lease must not overwrite a newer
// registration of the same ID; it stops instead.
func TestLostLeaseDoesNotOverwriteNewerRegistration(t *testing.T) {
	s := startEtcd(t)
	oldReg := newRegistry(t, s, "/herald")
	newReg := newRegistry(t, s, "/herald")
	w := discoverytest.Record(t, newReg, "room")
	older := discovery.Instance{Service: "room", ID: "room-1", Addr: "127.0.0.1:9001"}
	newer := discovery.Instance{Service: "room", ID: "room-1", Addr: "127.0.0.1:9002"}
	register(t, oldReg, older)
	raw := rawClient(t, s)
	key := discovery.Key("/herald", "room", "room-1")
	oldLease := keyLease(t, raw, key)
	register(t, newReg, newer)
	w.WaitFor(t, "the newer registration", discoverytest.IsSet(newer))

	if _, err := raw.Revoke(context.Background(), clientv3.LeaseID(oldLease)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, discoverytest.WaitTimeout, "older registration gives up", func() bool {
		oldReg.mu.Lock()
		defer oldReg.mu.Unlock()
		for g := range oldReg.regs {
			select {
			case <-g.done:
				return true
			default:
			}
		}
		return false
	})
	resp, err := raw.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), "9002") {
		t.Errorf("key = %v, want the newer registration", resp.Kvs)
	}
	if got := w.Sets(); !discovery.EqualSets(got[len(got)-1], []discovery.Instance{newer}) {
		t.Errorf("watch ended at %v, want the newer registration", got[len(got)-1])
	}
}

// Keys under the prefix that are not valid instances are skipped, not fatal.
func TestInvalidKeysIgnored(t *testing.T) {
	s := startEtcd(t)
	r := newRegistry(t, s, "/herald")
	raw := rawClient(t, s)
	ctx := context.Background()
	for key, value := range map[string]string{
		"/herald/services/room/broken":     "{not json",
		"/herald/services/room/noaddr":     `{"id":"noaddr"}`,
		"/herald/services/room/nested/key": `{"addr":"127.0.0.1:1"}`,
	} {
		if _, err := raw.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	// The key is authoritative: the value's service and ID are overridden.
	if _, err := raw.Put(ctx, "/herald/services/room/room-1", `{"service":"chat","id":"other","addr":"127.0.0.1:9001"}`); err != nil {
		t.Fatal(err)
	}
	w := discoverytest.Record(t, r, "room")
	w.WaitFor(t, "only the valid instance", discoverytest.IsSet(discovery.Instance{Service: "room", ID: "room-1", Addr: "127.0.0.1:9001"}))
}

type countingWatch struct{ calls atomic.Int64 }

func (c *countingWatch) deliver([]discovery.Instance) { c.calls.Add(1) }

// keyLease returns the lease key is held under, 0 if the key is absent, and
// -1 if etcd did not answer (it may be restarting).
func keyLease(t *testing.T, c *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Logf("get %s: %v", key, err)
		return -1
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].Lease
}

// leaseTTL returns the seconds left on a lease, -1 if it does not exist, and
// -2 if etcd did not answer.
func leaseTTL(t *testing.T, c *clientv3.Client, id int64) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		t.Logf("lease %x: %v", id, err)
		return -2
	}
	return resp.TTL
}

// leakOptions lists goroutines that outlive a test through no fault of ours.
func leakOptions() []goleak.Option {
	return nil
}
