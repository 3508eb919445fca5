package breaker

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is returned by Do when the breaker rejects a call: it is open, or it is
// half-open and already has Probes calls in flight. The call was not made.
var ErrOpen = errors.New("breaker: open")

// State is a breaker's state. Its String form is also its metric label.
type State int32

// States.
const (
	Closed State = iota
	HalfOpen
	Open
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Outcome is how a call's result counts toward opening the breaker.
type Outcome int

// Outcomes.
const (
	// Success keeps the breaker closed and, half-open, counts toward closing it.
	Success Outcome = iota
	// Failure counts toward opening the breaker and reopens a half-open one.
	Failure
	// Ignore counts neither way, for calls that say nothing about the instance's
	// health, such as those the caller abandoned.
	Ignore
)

// Hooks let the owner of a Breaker observe and steer it. Every field may be nil.
type Hooks struct {
	// OnStateChange is called on every transition with the breaker's name. It
	// runs with the breaker's mutex held, so calls arrive in the order of the
	// transitions; it must return quickly and must not call the Breaker.
	OnStateChange func(name string, from, to State)
	// Classify says how the error a call returned counts. Nil counts a nil
	// error as Success and any other as Failure.
	Classify func(err error) Outcome
}

// Counts are the calls counted in the current state (for a closed breaker, in
// the current window).
type Counts struct {
	Requests             uint32 // calls let through, including those still running
	Successes            uint32
	Failures             uint32
	ConsecutiveSuccesses uint32
	ConsecutiveFailures  uint32
}

// Breaker is one instance's circuit breaker. See the package doc.
type Breaker struct {
	// Immutable after New.
	cb       *gobreaker.CircuitBreaker[struct{}]
	cooldown time.Duration
	onChange func(name string, from, to State)

	// Written in onStateChange, under cb's mutex; read without it by Ready and
	// State, so balancers can skip an open instance without locking.
	state     atomic.Int32
	openUntil atomic.Int64 // unix nanoseconds; meaningful while state is Open
}

// New returns a closed Breaker. name identifies it in OnStateChange calls (the
// router uses "service/instance"). cfg is completed with WithDefaults; New fails
// if it is invalid.
func New(name string, cfg Config, h Hooks) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	b := &Breaker{cooldown: cfg.Cooldown, onChange: h.OnStateChange}
	classify := h.Classify
	if classify == nil {
		classify = func(err error) Outcome {
			if err != nil {
				return Failure
			}
			return Success
		}
	}
	consecutive := uint32(cfg.ConsecutiveFailures)
	minRequests := uint32(cfg.MinRequests)
	ratio := cfg.FailureRatio
	st := gobreaker.Settings{
		Name:         name,
		MaxRequests:  uint32(cfg.Probes),
		Interval:     cfg.Window,
		BucketPeriod: cfg.Window / 10,
		Timeout:      cfg.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= consecutive {
				return true
			}
			// Requests also counts calls still running and ignored ones, so the
			// ratio is over finished, counted calls only.
			done := c.TotalSuccesses + c.TotalFailures
			return done >= minRequests && float64(c.TotalFailures) >= ratio*float64(done)
		},
		OnStateChange: b.stateChanged,
		IsSuccessful:  func(err error) bool { return classify(err) == Success },
		IsExcluded:    func(err error) bool { return classify(err) == Ignore },
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](st)
	return b, nil
}

// Do calls fn if the breaker lets the call through and counts its result. It
// returns fn's error, or an error wrapping ErrOpen, without calling fn, if the
// breaker rejects the call. A panic in fn counts as a failure and is re-raised.
func (b *Breaker) Do(fn func() error) error {
	ran := false
	_, err := b.cb.Execute(func() (struct{}, error) {
		ran = true
		return struct{}{}, fn()
	})
	if !ran {
		return fmt.Errorf("%w: %s", ErrOpen, b.cb.Name())
	}
	return err
}

// Ready reports whether Do would currently let a call through, as far as can be
// told without a lock: false while the breaker is open and its cooldown has not
// passed. A half-open breaker is reported ready even when its probes are all in
// flight, so Do may still reject. Ready never blocks.
func (b *Breaker) Ready() bool {
	if State(b.state.Load()) != Open {
		return true
	}
	return time.Now().UnixNano() >= b.openUntil.Load()
}

// State returns the breaker's state as of its last transition. An open breaker
// whose cooldown has passed still reports Open until the next call moves it to
// half-open.
func (b *Breaker) State() State { return State(b.state.Load()) }

// Counts returns the calls counted in the current state.
func (b *Breaker) Counts() Counts {
	c := b.cb.Counts()
	return Counts{
		Requests:             c.Requests,
		Successes:            c.TotalSuccesses,
		Failures:             c.TotalFailures,
		ConsecutiveSuccesses: c.ConsecutiveSuccesses,
		ConsecutiveFailures:  c.ConsecutiveFailures,
	}
}

// Name returns the name given to New.
func (b *Breaker) Name() string { return b.cb.Name() }

func (b *Breaker) stateChanged(name string, from, to gobreaker.State) {
	f, t := fromGobreaker(from), fromGobreaker(to)
	if t == Open {
		// Set before state so that a reader seeing Open sees its deadline.
		b.openUntil.Store(time.Now().Add(b.cooldown).UnixNano())
	}
	b.state.Store(int32(t))
	if b.onChange != nil {
		b.onChange(name, f, t)
	}
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}
