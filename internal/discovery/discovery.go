package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Sentinel errors. Implementations wrap them with %w; callers test with
// errors.Is.
var (
	// ErrClosed is returned by Register and Watch once the Registry is closed.
	ErrClosed = errors.New("discovery: registry closed")
	// ErrInvalidInstance is returned by Register (and by constructors that
	// take instances from configuration) for an instance that fails
	// [Instance.Validate]. Retrying the same instance cannot succeed.
	ErrInvalidInstance = errors.New("discovery: invalid instance")
	// ErrInvalidName is returned for a service name or instance ID that
	// fails [ValidateName], for example by Watch.
	ErrInvalidName = errors.New("discovery: invalid name")
)

// MaxWeight is the largest [Instance.Weight] accepted. Weights are relative,
// so 1..100 expresses any split down to 1%; the bound keeps balancer
// snapshots (which scale with weight) small.
const MaxWeight = 100

// Instance is one running instance of a game service.
type Instance struct {
	// Service is the service name, for example "room". See ValidateName.
	Service string `json:"service"`
	// ID identifies the instance, unique within its Service. Registering a
	// second instance with the same Service and ID replaces the first.
	ID string `json:"id"`
	// Addr is where the instance listens: host:port of its gRPC server, or
	// the base URL of an HTTP service for proxy routes.
	Addr string `json:"addr"`
	// Weight is the instance's share of traffic relative to its peers,
	// 1..MaxWeight. 0 means the default, 1; see EffectiveWeight. Zero is
	// never "no traffic": an instance that should get none deregisters.
	Weight int `json:"weight,omitempty"`
	// Tags select instances for routing policies, for example
	// {"track": "canary"} for a canary release.
	Tags map[string]string `json:"tags,omitempty"`
	// Meta is free-form information for operators (version, zone, ...);
	// routing ignores it.
	Meta map[string]string `json:"meta,omitempty"`
}

// EffectiveWeight returns Weight with the default applied: 1 when Weight is 0.
func (in Instance) EffectiveWeight() int {
	if in.Weight <= 0 {
		return 1
	}
	return in.Weight
}

// Validate reports whether in can be registered. The error wraps
// ErrInvalidInstance.
func (in Instance) Validate() error {
	if err := ValidateName(in.Service); err != nil {
		return fmt.Errorf("%w: service: %w", ErrInvalidInstance, err)
	}
	if err := ValidateName(in.ID); err != nil {
		return fmt.Errorf("%w: id: %w", ErrInvalidInstance, err)
	}
	if in.Addr == "" {
		return fmt.Errorf("%w: %s/%s: empty addr", ErrInvalidInstance, in.Service, in.ID)
	}
	if in.Weight < 0 || in.Weight > MaxWeight {
		return fmt.Errorf("%w: %s/%s: weight %d outside 0..%d", ErrInvalidInstance, in.Service, in.ID, in.Weight, MaxWeight)
	}
	return nil
}

// Equal reports whether in and o describe the same instance in every field.
// Nil and empty maps are equal.
func (in Instance) Equal(o Instance) bool {
	return in.Service == o.Service && in.ID == o.ID && in.Addr == o.Addr &&
		in.Weight == o.Weight && maps.Equal(in.Tags, o.Tags) && maps.Equal(in.Meta, o.Meta)
}

// EqualSets reports whether a and b hold equal instances in the same order.
// Registries use it to skip calling a watcher with an unchanged set.
func EqualSets(a, b []Instance) bool {
	return slices.EqualFunc(a, b, Instance.Equal)
}

// SortByID sorts a set the way Registry.Watch delivers it.
func SortByID(set []Instance) {
	slices.SortFunc(set, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
}

// maxNameLen keeps keys well under etcd's default request size and keeps
// names usable as metric labels.
const maxNameLen = 128

// ValidateName reports whether s can be a service name or an instance ID:
// 1 to 128 characters from [A-Za-z0-9._:-]. Excluding "/" is what makes the
// key schema unambiguous. The error wraps ErrInvalidName.
func ValidateName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: %q longer than %d bytes", ErrInvalidName, s, maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '-':
		default:
			return fmt.Errorf("%w: %q: character %q not allowed", ErrInvalidName, s, c)
		}
	}
	return nil
}

// ServicePrefix returns the key prefix under which all instances of service
// live, ending in "/" so that "room" never matches "room2". prefix is the
// registry's root, for example "/herald".
func ServicePrefix(prefix, service string) string {
	return prefix + "/services/" + service + "/"
}

// Key returns the key of one instance under prefix; see the package doc.
func Key(prefix, service, id string) string {
	return ServicePrefix(prefix, service) + id
}

// Registry is the contract every discovery backend satisfies.
//
// All methods are safe for concurrent use. Implementations: discovery/static,
// discovery/etcd.
type Registry interface {
	// Register announces in until the returned deregister func is called,
	// the Registry is closed, or the registering process dies; the backend
	// keeps it alive meanwhile (for etcd: a lease kept alive, and renewed
	// if it is ever lost). Called by a game service (through the service
	// SDK) or by tests, from any goroutine.
	//
	// Register blocks until the instance is stored or ctx is done; it
	// returns an error wrapping ErrInvalidInstance for an invalid instance,
	// ErrClosed after Close, or the backend's error (retryable) if it could
	// not store the instance. Registering an ID already present replaces
	// that instance; each deregister func removes only its own
	// registration, never a later one with the same ID.
	//
	// deregister removes the instance and stops keeping it alive. It blocks
	// until the backend confirms or ctx is done; on error the instance still
	// disappears once its health signal lapses (the lease TTL). It is
	// idempotent, and safe to call after Close.
	Register(ctx context.Context, in Instance) (deregister func(context.Context) error, err error)

	// Watch calls fn with the full set of service's instances, sorted by
	// ID: first as soon as the current set is known (an empty slice when
	// the service has none), then each time the set changes. Sets equal to
	// the last one delivered are not delivered again. Called by the router,
	// once per service, on a goroutine it owns.
	//
	// fn runs on the goroutine that called Watch, never concurrently with
	// itself, and Watch waits for it, so fn should return quickly (build a
	// snapshot and swap it in). fn owns the slice; the instances' Tags and
	// Meta maps are shared and read-only.
	//
	// Watch blocks until ctx is done, then returns ctx.Err(); or until the
	// Registry is closed, then returns ErrClosed. An invalid service name
	// returns an error wrapping ErrInvalidName at once. Losing the backend
	// is not an error: Watch keeps the last set it delivered (it never
	// reports instances gone because the backend is unreachable), retries,
	// and delivers the current set once the backend is back.
	Watch(ctx context.Context, service string, fn func([]Instance)) error

	// Close stops all Watch calls (they return ErrClosed), deregisters the
	// instances registered through this Registry on a best-effort basis, and
	// releases the backend's resources. It does not wait for fn callbacks
	// that are running. Close is idempotent; later calls return nil.
	Close() error
}
