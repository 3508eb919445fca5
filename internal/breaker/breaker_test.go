package breaker

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	errBoom    = errors.New("boom")
	errIgnored = errors.New("caller went away")
)

func classify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, errIgnored):
		return Ignore
	}
	return Failure
}

// transitions records OnStateChange calls.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) hook(name string, from, to State) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, name+": "+from.String()+" -> "+to.String())
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.got...)
}

func newBreaker(t *testing.T, cfg Config) (*Breaker, *transitions) {
	t.Helper()
	tr := &transitions{}
	b, err := New("room/a", cfg, Hooks{OnStateChange: tr.hook, Classify: classify})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, tr
}

// call runs one call through b that returns result, and reports whether fn ran.
func call(b *Breaker, result error) (ran bool, err error) {
	err = b.Do(func() error { ran = true; return result })
	return ran, err
}

func TestTrip(t *testing.T) {
	s, f, ign := error(nil), errBoom, errIgnored
	tests := []struct {
		name     string
		cfg      Config
		calls    []error
		wantOpen bool
	}{
		{"consecutive failures", Config{ConsecutiveFailures: 3, MinRequests: 100}, []error{s, f, f, f}, true},
		{"one short of consecutive", Config{ConsecutiveFailures: 3, MinRequests: 100}, []error{f, f, s, f, f}, false},
		{"ratio reached at min requests", Config{ConsecutiveFailures: 100, MinRequests: 10, FailureRatio: 0.5},
			[]error{s, f, s, f, s, f, s, f, s, f}, true},
		{"ratio before min requests", Config{ConsecutiveFailures: 100, MinRequests: 10, FailureRatio: 0.5},
			[]error{f, s, f, s, f, s, f, s, f}, false},
		{"ratio not reached", Config{ConsecutiveFailures: 100, MinRequests: 10, FailureRatio: 0.5},
			[]error{s, f, s, s, f, s, s, f, s, s, f, s, s, f}, false},
		{"ignored calls count neither way", Config{ConsecutiveFailures: 2, MinRequests: 2, FailureRatio: 0.5},
			[]error{f, ign, ign, ign, s, ign, ign}, false},
		{"ignored calls do not break a run", Config{ConsecutiveFailures: 3, MinRequests: 100},
			[]error{f, ign, f, ign, f}, true},
		{"defaults: five in a row", Config{}, []error{f, f, f, f, f}, true},
		{"defaults: four in a row", Config{}, []error{f, f, f, f, s, f, f, f, f}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, tr := newBreaker(t, tt.cfg)
			for i, c := range tt.calls {
				if ran, err := call(b, c); !ran || !errors.Is(err, c) && c != nil {
					t.Fatalf("call %d: ran=%v err=%v, want the call made", i, ran, err)
				}
			}
			if got := b.State() == Open; got != tt.wantOpen {
				t.Fatalf("open = %v, want %v (counts %+v)", got, tt.wantOpen, b.Counts())
			}
			if !tt.wantOpen {
				return
			}
			if b.Ready() {
				t.Error("Ready() = true while open within cooldown")
			}
			ran, err := call(b, nil)
			if ran || !errors.Is(err, ErrOpen) {
				t.Errorf("call while open: ran=%v err=%v, want ErrOpen without the call", ran, err)
			}
			if diff := cmp.Diff([]string{"room/a: closed -> open"}, tr.list()); diff != "" {
				t.Errorf("transitions (-want +got):\n%s", diff)
			}
		})
	}
}

// waitReady waits for an open breaker's cooldown to pass.
func waitReady(t *testing.T, b *Breaker) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !b.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("breaker not ready within 10s of opening")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHalfOpen(t *testing.T) {
	tests := []struct {
		name   string
		probes int
		// results of the calls made after the cooldown
		calls []error
		want  []string // transitions after closed -> open
		state State
	}{
		{"probe succeeds", 1, []error{nil}, []string{"open -> half_open", "half_open -> closed"}, Closed},
		{"probe fails", 1, []error{errBoom}, []string{"open -> half_open", "half_open -> open"}, Open},
		{"two probes succeed", 2, []error{nil, nil}, []string{"open -> half_open", "half_open -> closed"}, Closed},
		{"second probe fails", 2, []error{nil, errBoom}, []string{"open -> half_open", "half_open -> open"}, Open},
		{"ignored probe", 1, []error{errIgnored}, []string{"open -> half_open"}, HalfOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, tr := newBreaker(t, Config{ConsecutiveFailures: 1, Cooldown: time.Millisecond, Probes: tt.probes})
			call(b, errBoom)
			waitReady(t, b)
			for i, c := range tt.calls {
				if ran, _ := call(b, c); !ran {
					t.Fatalf("probe %d was not let through", i)
				}
			}
			var want []string
			for _, w := range append([]string{"closed -> open"}, tt.want...) {
				want = append(want, "room/a: "+w)
			}
			if diff := cmp.Diff(want, tr.list()); diff != "" {
				t.Errorf("transitions (-want +got):\n%s", diff)
			}
			if b.State() != tt.state {
				t.Errorf("state %v, want %v", b.State(), tt.state)
			}
		})
	}
}

func TestHalfOpenLimitsProbes(t *testing.T) {
	b, _ := newBreaker(t, Config{ConsecutiveFailures: 1, Cooldown: time.Millisecond, Probes: 1})
	call(b, errBoom)
	waitReady(t, b)

	inProbe, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- b.Do(func() error { close(inProbe); <-release; return nil })
	}()
	<-inProbe
	if !b.Ready() {
		t.Error("Ready() = false while half-open")
	}
	if ran, err := call(b, nil); ran || !errors.Is(err, ErrOpen) {
		t.Errorf("second call during the probe: ran=%v err=%v, want ErrOpen", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if b.State() != Closed {
		t.Errorf("state after successful probe: %v", b.State())
	}
}

func TestPanicCountsAsFailure(t *testing.T) {
	b, _ := newBreaker(t, Config{ConsecutiveFailures: 1})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		_ = b.Do(func() error { panic("handler bug") })
	}()
	if b.State() != Open {
		t.Errorf("state after a panic: %v, want open", b.State())
	}
}

func TestDefaultClassify(t *testing.T) {
	b, err := New("x", Config{ConsecutiveFailures: 2}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	call(b, errIgnored)
	call(b, errIgnored)
	if b.State() != Open {
		t.Errorf("without Classify every error should be a failure; state %v", b.State())
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero", Config{}, false},
		{"ratio one", Config{FailureRatio: 1}, false},
		{"ratio above one", Config{FailureRatio: 1.5}, true},
		{"negative ratio", Config{FailureRatio: -0.1}, true},
		{"negative min requests", Config{MinRequests: -1}, true},
		{"negative consecutive", Config{ConsecutiveFailures: -1}, true},
		{"negative window", Config{Window: -time.Second}, true},
		{"negative cooldown", Config{Cooldown: -time.Second}, true},
		{"negative probes", Config{Probes: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
			if _, nerr := New("x", tt.cfg, Hooks{}); (nerr != nil) != tt.wantErr {
				t.Errorf("New() = %v, wantErr %v", nerr, tt.wantErr)
			}
		})
	}
	want := Config{FailureRatio: 0.5, MinRequests: 20, ConsecutiveFailures: 5, Window: 10 * time.Second, Cooldown: 5 * time.Second, Probes: 1}
	if diff := cmp.Diff(want, Config{}.WithDefaults()); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestDoAllocs(t *testing.T) {
	b, _ := newBreaker(t, Config{})
	fn := func() error { return nil }
	if n := testing.AllocsPerRun(1000, func() { _ = b.Do(fn) }); n != 0 {
		t.Errorf("Do allocates %v times per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = b.Ready() }); n != 0 {
		t.Errorf("Ready allocates %v times per call, want 0", n)
	}
}

func BenchmarkDo(b *testing.B) {
	br, err := New("x", Config{}, Hooks{})
	if err != nil {
		b.Fatal(err)
	}
	fn := func() error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = br.Do(fn)
		}
	})
}
