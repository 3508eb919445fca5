package static

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/heraldgg/herald/internal/discovery"
)

// Config lists the instances that exist without registering.
type Config struct {
	// Services maps a service name to its instances. An instance's Service
	// may be left empty: it is taken from the map key. Default: no services.
	Services map[string][]discovery.Instance `koanf:"services"`
}

// Registry is a discovery.Registry backed by memory.
type Registry struct {
	// Closed by Close; never reopened.
	done chan struct{}

	mu sync.Mutex
	// Guarded by mu.
	closed   bool
	services map[string]*service
	// lastToken numbers registrations so a deregister func removes only its
	// own registration. Configured instances carry token 0.
	lastToken uint64
}

// service is one service's instances. Guarded by Registry.mu.
type service struct {
	byID map[string]entry
	// changed is closed and replaced whenever byID changes.
	changed chan struct{}
}

type entry struct {
	in    discovery.Instance
	token uint64
}

var _ discovery.Registry = (*Registry)(nil)

// New returns a Registry holding cfg's instances. It fails, wrapping
// discovery.ErrInvalidInstance, if an instance is invalid, names a service
// other than its map key, or repeats an ID.
func New(cfg Config) (*Registry, error) {
	r := &Registry{
		done:     make(chan struct{}),
		services: make(map[string]*service),
	}
	for name, list := range cfg.Services {
		svc := r.serviceLocked(name)
		for _, in := range list {
			if in.Service == "" {
				in.Service = name
			}
			if in.Service != name {
				return nil, fmt.Errorf("%w: instance %q listed under service %q names service %q",
					discovery.ErrInvalidInstance, in.ID, name, in.Service)
			}
			if err := in.Validate(); err != nil {
				return nil, err
			}
			if _, dup := svc.byID[in.ID]; dup {
				return nil, fmt.Errorf("%w: %s/%s listed twice", discovery.ErrInvalidInstance, name, in.ID)
			}
			svc.byID[in.ID] = entry{in: in}
		}
	}
	return r, nil
}

// Register adds in to this process's view until deregister is called or the
// Registry is closed. It never blocks on I/O; ctx is accepted for the
// interface and only checked once.
func (r *Registry) Register(ctx context.Context, in discovery.Instance) (func(context.Context) error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, discovery.ErrClosed
	}
	r.lastToken++
	token := r.lastToken
	svc := r.serviceLocked(in.Service)
	svc.byID[in.ID] = entry{in: in, token: token}
	svc.notifyLocked()

	var once sync.Once
	deregister := func(context.Context) error {
		once.Do(func() { r.remove(in.Service, in.ID, token) })
		return nil
	}
	return deregister, nil
}

func (r *Registry) remove(name, id string, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	svc := r.services[name]
	if e, ok := svc.byID[id]; ok && e.token == token {
		delete(svc.byID, id)
		svc.notifyLocked()
	}
}

// Watch implements discovery.Registry. The first set is delivered at once.
func (r *Registry) Watch(ctx context.Context, name string, fn func([]discovery.Instance)) error {
	if err := discovery.ValidateName(name); err != nil {
		return err
	}
	var last []discovery.Instance
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return discovery.ErrClosed
		}
		svc := r.serviceLocked(name)
		set := svc.snapshotLocked()
		changed := svc.changed
		r.mu.Unlock()

		if first || !discovery.EqualSets(set, last) {
			// fn owns set, so keep our own copy to compare against.
			last = slices.Clone(set)
			fn(set)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return discovery.ErrClosed
		case <-changed:
		}
	}
}

// Close makes every Watch return discovery.ErrClosed and Register fail.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	return nil
}

func (r *Registry) serviceLocked(name string) *service {
	svc, ok := r.services[name]
	if !ok {
		svc = &service{byID: make(map[string]entry), changed: make(chan struct{})}
		r.services[name] = svc
	}
	return svc
}

func (s *service) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *service) snapshotLocked() []discovery.Instance {
	set := make([]discovery.Instance, 0, len(s.byID))
	for _, e := range s.byID {
		set = append(set, e.in)
	}
	discovery.SortByID(set)
	return set
}
