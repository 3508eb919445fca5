package balancer

import (
	"fmt"
	"sync/atomic"
)

// Policy names a balancing policy; see the package doc.
type Policy string

// Policies.
const (
	RoundRobin    Policy = "round_robin"
	LeastInFlight Policy = "least_in_flight"
	Hash          Policy = "hash"
	Weighted      Policy = "weighted"
)

// Config chooses and tunes a service's policy. The zero value is round robin.
type Config struct {
	// Policy is one of round_robin, least_in_flight, hash (sticky on the user
	// id) or weighted (shares per tag value). Default round_robin.
	Policy Policy `koanf:"policy"`
	// Tag is the instance tag whose values Weights refers to. Default "track".
	Tag string `koanf:"tag"`
	// Weights gives instances with a listed Tag value that share of traffic, in
	// percent, for the weighted policy: {"canary": 5}. Instances whose value is
	// not listed, or that lack the tag, share what remains of 100. Listed shares
	// may not add up to more than 100. Default: none, so every instance's share
	// follows its discovery weight alone.
	Weights map[string]int `koanf:"weights"`
	// VirtualNodes is how many points the hash policy puts on its ring per unit
	// of instance weight. More points spread players more evenly (about
	// ±1/√VirtualNodes) at the cost of a larger ring. Default 160.
	VirtualNodes int `koanf:"virtual_nodes"`
}

// Defaults, applied by WithDefaults.
const (
	DefaultPolicy       = RoundRobin
	DefaultTag          = "track"
	DefaultVirtualNodes = 160
	// maxVirtualNodes keeps a ring of MaxWeight instances in the low megabytes.
	maxVirtualNodes = 1000
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Policy == "" {
		c.Policy = DefaultPolicy
	}
	if c.Tag == "" {
		c.Tag = DefaultTag
	}
	if c.VirtualNodes == 0 {
		c.VirtualNodes = DefaultVirtualNodes
	}
	return c
}

// Validate reports the first invalid field of c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch c.Policy {
	case RoundRobin, LeastInFlight, Hash, Weighted:
	default:
		return fmt.Errorf("policy: %q is not one of round_robin, least_in_flight, hash, weighted", c.Policy)
	}
	sum := 0
	for v, w := range c.Weights {
		if w < 0 || w > 100 {
			return fmt.Errorf("weights: %q: %d is not a percentage", v, w)
		}
		sum += w
	}
	if sum > 100 {
		return fmt.Errorf("weights: shares add up to %d%%, more than 100%%", sum)
	}
	if c.VirtualNodes < 1 || c.VirtualNodes > maxVirtualNodes {
		return fmt.Errorf("virtual_nodes: %d is not in 1..%d", c.VirtualNodes, maxVirtualNodes)
	}
	return nil
}

// Endpoint is the live state of one instance that picking reads. The router's
// instances implement it. Both methods are called on the picking goroutine, for
// many instances per pick, so they must be lock-free and must not block.
type Endpoint interface {
	// Ready reports whether the instance can take a request now.
	Ready() bool
	// InFlight is the number of requests the instance is serving now.
	InFlight() int64
}

// Instance is one instance as the balancer sees it.
type Instance struct {
	// ID identifies the instance; the hash ring places it by ID, so an instance
	// keeps its players across snapshots as long as its ID stays.
	ID string
	// Weight is the instance's traffic relative to its peers, 1..100; 0 means 1.
	Weight int
	// Tags select the weighted policy's group (Config.Tag). Read-only.
	Tags map[string]string
	// Endpoint reports readiness and load. Nil: always ready, nothing in flight.
	Endpoint Endpoint
}

func (in *Instance) weight() int {
	if in.Weight <= 0 {
		return 1
	}
	return in.Weight
}

// MaxTried is how many instances one request can exclude from its picks.
const MaxTried = 8

// Tried is the set of instances, by index in one Snapshot, that a request has
// already used or found unusable, so that Pick skips them. The zero value is
// empty. It lives on the request's stack.
type Tried struct {
	n   int
	idx [MaxTried]int32
}

// Add records i. It returns false, recording nothing, once MaxTried instances
// are recorded: the caller should stop trying.
func (t *Tried) Add(i int) bool {
	if t.n == MaxTried {
		return false
	}
	t.idx[t.n] = int32(i)
	t.n++
	return true
}

// Has reports whether i was recorded. A nil Tried is empty.
func (t *Tried) Has(i int) bool {
	if t == nil {
		return false
	}
	for _, x := range t.idx[:t.n] {
		if int(x) == i {
			return true
		}
	}
	return false
}

// Len is the number of recorded instances.
func (t *Tried) Len() int { return t.n }

// Snapshot is an immutable instance list with its policy's tables.
//
// The policy is a switch over concrete types rather than an interface: a
// *Tried passed through an interface call escapes to the heap, which would cost
// every request an allocation.
type Snapshot struct {
	instances []Instance
	policy    Policy
	rr        *roundRobin
	least     *leastInFlight
	ring      *ring
	weighted  *weighted
}

// Len is the number of instances.
func (s *Snapshot) Len() int { return len(s.instances) }

// Instance returns instance i, 0 <= i < Len. The pointer is valid for as long
// as the Snapshot is referenced; the instance must not be modified.
func (s *Snapshot) Instance(i int) *Instance { return &s.instances[i] }

// Pick returns the index of the instance that should take a request with key
// (the user id, or the session id when there is no user; only the hash policy
// reads it), skipping instances in tried and those not Ready. It returns -1 when
// no instance qualifies. tried may be nil. Pick never blocks or allocates.
func (s *Snapshot) Pick(key string, tried *Tried) int {
	if len(s.instances) == 0 {
		return -1
	}
	switch s.policy {
	case LeastInFlight:
		return s.least.pick(s, tried)
	case Hash:
		return s.ring.pick(s, key, tried)
	case Weighted:
		return s.weighted.pick(s, tried)
	}
	return s.rr.pick(s, tried)
}

// usable reports whether instance i may be picked.
func (s *Snapshot) usable(i int, tried *Tried) bool {
	if tried.Has(i) {
		return false
	}
	ep := s.instances[i].Endpoint
	return ep == nil || ep.Ready()
}

func (s *Snapshot) inFlight(i int) int64 {
	if ep := s.instances[i].Endpoint; ep != nil {
		return ep.InFlight()
	}
	return 0
}

// Balancer holds the current Snapshot of one service.
type Balancer struct {
	// Immutable after New.
	cfg Config

	// Shared by every snapshot, so a swap does not restart the rotation (which
	// would send a burst to the first instance on every discovery change).
	next atomic.Uint64

	cur atomic.Pointer[Snapshot]
}

// New returns a Balancer with an empty Snapshot. cfg is completed with
// WithDefaults; New fails if it is invalid.
func New(cfg Config) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	b := &Balancer{cfg: cfg.WithDefaults()}
	b.Update(nil)
	return b, nil
}

// Policy returns the configured policy.
func (b *Balancer) Policy() Policy { return b.cfg.Policy }

// Snapshot returns the current Snapshot, never nil. Load it once per request.
func (b *Balancer) Snapshot() *Snapshot { return b.cur.Load() }

// Update builds a Snapshot of instances and makes it current. The Balancer
// keeps the slice; the caller must not modify it afterwards. Instance IDs must
// be unique. Update must not be called concurrently with itself.
func (b *Balancer) Update(instances []Instance) {
	s := &Snapshot{instances: instances, policy: b.cfg.Policy}
	switch b.cfg.Policy {
	case LeastInFlight:
		s.least = &leastInFlight{next: &b.next}
	case Hash:
		s.ring = newRing(instances, b.cfg.VirtualNodes)
	case Weighted:
		s.weighted = newWeighted(instances, b.cfg.Tag, b.cfg.Weights, &b.next)
	default:
		s.rr = newRoundRobin(instances, &b.next)
	}
	b.cur.Store(s)
}
