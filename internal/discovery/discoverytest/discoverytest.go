// Package discoverytest is the conformance suite every discovery.Registry
// passes. Each implementation's tests call Run against a real backend:
//
//	func TestConformance(t *testing.T) {
//		discoverytest.Run(t, func(t *testing.T) discovery.Registry { ... })
//	}
//
// The suite checks only what the discovery.Registry contract promises, never
// timing beyond "eventually, within WaitTimeout".
package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/heraldgg/herald/internal/discovery"
)

// WaitTimeout bounds every "eventually" in the suite. It is generous because
// CI machines are small and shared; a passing run takes milliseconds per wait.
const WaitTimeout = 15 * time.Second

// Run runs the conformance suite as subtests of t.
//
// newRegistry is called once or more per subtest and returns a Registry that
// sees no instances of the services the suite uses ("room", "room2", "chat")
// other than those the suite registers; registries returned within one subtest
// must share a backend (for etcd: the same server and prefix). Run closes every
// Registry it gets, after the subtest; Close is idempotent, so newRegistry may
// also register its own cleanup.
func Run(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	get := func(t *testing.T) discovery.Registry {
		t.Helper()
		r := newRegistry(t)
		t.Cleanup(func() {
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return r
	}
	tests := []struct {
		name string
		run  func(t *testing.T, newRegistry func(t *testing.T) discovery.Registry)
	}{
		{"EmptyService", testEmptyService},
		{"RegisterAppears", testRegisterAppears},
		{"RegisteredBeforeWatch", testRegisteredBeforeWatch},
		{"DeregisterDisappears", testDeregisterDisappears},
		{"TwoInstances", testTwoInstances},
		{"ReplaceSameID", testReplaceSameID},
		{"ServicesIsolated", testServicesIsolated},
		{"TwoWatchers", testTwoWatchers},
		{"InvalidInput", testInvalidInput},
		{"CancelStopsWatch", testCancelStopsWatch},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, get) })
	}
}

func instance(service, id string) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Addr: "127.0.0.1:9000"}
}

func testEmptyService(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	w := Record(t, newRegistry(t), "room")
	w.WaitFor(t, "the first, empty set", IsSet())
}

func testRegisterAppears(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	w := Record(t, r, "room")
	w.WaitFor(t, "the first, empty set", IsSet())

	in := discovery.Instance{
		Service: "room", ID: "room-1", Addr: "127.0.0.1:9001", Weight: 3,
		Tags: map[string]string{"track": "canary"},
		Meta: map[string]string{"version": "1.2.3"},
	}
	register(t, r, in)
	w.WaitFor(t, "room-1 with every field intact", IsSet(in))
}

func testRegisteredBeforeWatch(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	in := instance("room", "room-1")
	register(t, r, in)
	w := Record(t, r, "room")
	w.WaitFor(t, "room-1 in the first set", IsSet(in))
	if got := w.Sets()[0]; !discovery.EqualSets(got, []discovery.Instance{in}) {
		t.Errorf("first set = %v, want only room-1: a registered instance must be in the first set", got)
	}
}

func testDeregisterDisappears(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	w := Record(t, r, "room")
	in := instance("room", "room-1")
	deregister := register(t, r, in)
	w.WaitFor(t, "room-1", IsSet(in))

	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	w.WaitFor(t, "an empty set after deregister", IsSet())
	if err := deregister(ctx); err != nil {
		t.Errorf("second deregister: %v, want nil (idempotent)", err)
	}
}

func testTwoInstances(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	w := Record(t, r, "room")
	b, a := instance("room", "room-b"), instance("room", "room-a")
	deregB := register(t, r, b)
	deregA := register(t, r, a)
	w.WaitFor(t, "room-a and room-b, sorted by ID", IsSet(a, b))

	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := deregA(ctx); err != nil {
		t.Fatalf("deregister room-a: %v", err)
	}
	w.WaitFor(t, "only room-b", IsSet(b))
	if err := deregB(ctx); err != nil {
		t.Fatalf("deregister room-b: %v", err)
	}
	w.WaitFor(t, "an empty set", IsSet())
}

func testReplaceSameID(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	w := Record(t, r, "room")
	old := instance("room", "room-1")
	cur := old
	cur.Addr = "127.0.0.1:9999"
	deregOld := register(t, r, old)
	w.WaitFor(t, "the first registration", IsSet(old))
	deregCur := register(t, r, cur)
	w.WaitFor(t, "the second registration replacing the first", IsSet(cur))

	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := deregOld(ctx); err != nil {
		t.Fatalf("deregister first: %v", err)
	}
	// The first registration's deregister must not remove the second. Prove
	// the registry has processed it by making one more change after it.
	other := instance("room", "room-2")
	register(t, r, other)
	w.WaitFor(t, "room-2 next to the second registration", IsSet(cur, other))

	if err := deregCur(ctx); err != nil {
		t.Fatalf("deregister second: %v", err)
	}
	w.WaitFor(t, "only room-2", IsSet(other))
}

func testServicesIsolated(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	w := Record(t, r, "room")
	w.WaitFor(t, "the first, empty set", IsSet())
	register(t, r, instance("room2", "room2-1"))
	register(t, r, instance("chat", "chat-1"))
	marker := instance("room", "room-1")
	register(t, r, marker)
	w.WaitFor(t, "room-1", func(set []discovery.Instance) bool { return len(set) > 0 })
	for _, set := range w.Sets() {
		for _, in := range set {
			if in.Service != "room" {
				t.Errorf("watch of room delivered %s/%s", in.Service, in.ID)
			}
		}
	}
	w.WaitFor(t, "only room-1", IsSet(marker))
}

func testTwoWatchers(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	w1 := Record(t, r, "room")
	w2 := Record(t, r, "room")
	in := instance("room", "room-1")
	deregister := register(t, r, in)
	w1.WaitFor(t, "room-1 in the first watcher", IsSet(in))
	w2.WaitFor(t, "room-1 in the second watcher", IsSet(in))
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	w1.WaitFor(t, "an empty set in the first watcher", IsSet())
	w2.WaitFor(t, "an empty set in the second watcher", IsSet())
}

func testInvalidInput(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	bad := []struct {
		name string
		in   discovery.Instance
	}{
		{"empty service", discovery.Instance{ID: "x", Addr: "127.0.0.1:1"}},
		{"empty id", discovery.Instance{Service: "room", Addr: "127.0.0.1:1"}},
		{"slash in id", discovery.Instance{Service: "room", ID: "a/b", Addr: "127.0.0.1:1"}},
		{"slash in service", discovery.Instance{Service: "room/x", ID: "a", Addr: "127.0.0.1:1"}},
		{"empty addr", discovery.Instance{Service: "room", ID: "a"}},
		{"negative weight", discovery.Instance{Service: "room", ID: "a", Addr: "127.0.0.1:1", Weight: -1}},
		{"weight too large", discovery.Instance{Service: "room", ID: "a", Addr: "127.0.0.1:1", Weight: discovery.MaxWeight + 1}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			dereg, err := r.Register(ctx, tc.in)
			if !errors.Is(err, discovery.ErrInvalidInstance) {
				t.Errorf("Register(%+v) error = %v, want ErrInvalidInstance", tc.in, err)
			}
			if dereg != nil {
				t.Errorf("Register returned a deregister func with error %v", err)
			}
		})
	}
	err := r.Watch(ctx, "room/x", func([]discovery.Instance) { t.Error("fn called for an invalid service") })
	if !errors.Is(err, discovery.ErrInvalidName) {
		t.Errorf("Watch(room/x) error = %v, want ErrInvalidName", err)
	}
}

func testCancelStopsWatch(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		errc <- r.Watch(ctx, "room", func([]discovery.Instance) { once.Do(func() { close(first) }) })
	}()
	select {
	case <-first:
	case <-time.After(WaitTimeout):
		cancel()
		t.Fatal("no first set")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v after cancel, want context.Canceled", err)
		}
	case <-time.After(WaitTimeout):
		t.Fatal("Watch did not return after its ctx was canceled")
	}
}

func testClose(t *testing.T, newRegistry func(t *testing.T) discovery.Registry) {
	r := newRegistry(t)
	in := instance("room", "room-1")
	deregister := register(t, r, in)

	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	first := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		errc <- r.Watch(ctx, "room", func([]discovery.Instance) { once.Do(func() { close(first) }) })
	}()
	select {
	case <-first:
	case <-time.After(WaitTimeout):
		t.Fatal("no first set")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("Watch returned %v after Close, want ErrClosed", err)
		}
	case <-time.After(WaitTimeout):
		t.Fatal("Watch did not return after Close")
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	if _, err := r.Register(ctx, instance("room", "room-2")); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Register after Close: %v, want ErrClosed", err)
	}
	if err := r.Watch(ctx, "room", func([]discovery.Instance) {}); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
	// The contract only asks that this is safe; Close already deregistered.
	_ = deregister(ctx)
}

// register registers in and deregisters it at cleanup.
func register(t *testing.T, r discovery.Registry, in discovery.Instance) func(context.Context) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	deregister, err := r.Register(ctx, in)
	if err != nil {
		t.Fatalf("Register(%s/%s): %v", in.Service, in.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		defer cancel()
		_ = deregister(ctx)
	})
	return deregister
}

// IsSet returns a predicate for WaitFor matching a set equal to want, which
// must be sorted by ID. IsSet() matches the empty set.
func IsSet(want ...discovery.Instance) func([]discovery.Instance) bool {
	if want == nil {
		want = []discovery.Instance{}
	}
	return func(got []discovery.Instance) bool { return discovery.EqualSets(got, want) }
}

// Recorder records every set one Watch call delivers, for tests of
// Registry implementations and of their consumers.
type Recorder struct {
	service string
	errc    chan error

	mu sync.Mutex
	// Guarded by mu.
	got []([]discovery.Instance)
	// changed is closed and replaced on every delivery.
	changed chan struct{}
}

// Record runs r.Watch(ctx, service) on a new goroutine until the test ends,
// then checks that it returned context.Canceled or discovery.ErrClosed.
func Record(t *testing.T, r discovery.Registry, service string) *Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &Recorder{service: service, errc: make(chan error, 1), changed: make(chan struct{})}
	go func() { w.errc <- r.Watch(ctx, service, w.deliver) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.errc:
			if !errors.Is(err, context.Canceled) && !errors.Is(err, discovery.ErrClosed) {
				t.Errorf("Watch(%s) returned %v", service, err)
			}
		case <-time.After(WaitTimeout):
			t.Errorf("Watch(%s) did not return after cancel", service)
		}
	})
	return w
}

func (w *Recorder) deliver(set []discovery.Instance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, set)
	close(w.changed)
	w.changed = make(chan struct{})
}

// Sets returns every set delivered so far, oldest first.
func (w *Recorder) Sets() [][]discovery.Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// WaitFor waits up to WaitTimeout until the newest delivered set satisfies
// pred and returns it; what describes the awaited set in the failure message.
// It then checks the contract's invariants over every set delivered so far:
// non-nil, sorted by ID, never equal to the previous one.
func (w *Recorder) WaitFor(t *testing.T, what string, pred func([]discovery.Instance) bool) []discovery.Instance {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		var last []discovery.Instance
		n := len(w.got)
		if n > 0 {
			last = w.got[n-1]
		}
		changed := w.changed
		w.mu.Unlock()

		if n > 0 && pred(last) {
			w.checkInvariants(t)
			return last
		}
		select {
		case <-changed:
		case err := <-w.errc:
			w.errc <- err
			t.Fatalf("Watch(%s) returned %v while waiting for %s", w.service, err, what)
		case <-deadline.C:
			t.Fatalf("Watch(%s): no %s within %v; sets delivered:\n%s", w.service, what, WaitTimeout, w.describe())
		}
	}
}

func (w *Recorder) checkInvariants(t *testing.T) {
	t.Helper()
	sets := w.Sets()
	for i, set := range sets {
		if set == nil {
			t.Errorf("set %d is nil, want a non-nil (possibly empty) slice", i)
		}
		if !slices.IsSortedFunc(set, func(a, b discovery.Instance) int { return strings.Compare(a.ID, b.ID) }) {
			t.Errorf("set %d not sorted by ID: %v", i, set)
		}
		if i > 0 && discovery.EqualSets(set, sets[i-1]) {
			t.Errorf("set %d repeats set %d: %v", i, i-1, set)
		}
	}
}

func (w *Recorder) describe() string {
	var b strings.Builder
	prev := []discovery.Instance{}
	for i, set := range w.Sets() {
		fmt.Fprintf(&b, "set %d (-previous +this):\n%s", i, cmp.Diff(prev, set, cmpopts.EquateEmpty()))
		prev = set
	}
	return b.String()
}
