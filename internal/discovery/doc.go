// Package discovery defines how Herald finds the instances of a game service:
// the [Instance] type, the [Registry] contract every backend satisfies, and the
// key schema shared by backends that store instances in a key-value store.
//
// # Model
//
// A game service (for example "room") runs as any number of instances. Each
// instance registers itself with [Registry.Register] and stays registered only
// while the registering process is alive: backends tie a registration to a
// health signal (an etcd lease kept alive by the process), so an instance
// whose process dies disappears on its own within a bounded time, without
// anybody deregistering it.
//
// A consumer (the router) calls [Registry.Watch] once per service and receives
// the full current set of instances every time it changes. It never receives
// deltas, so it never has to reconcile: it rebuilds its balancer snapshot from
// each set it is given.
//
// Implementations live in subpackages: discovery/static (instances from
// configuration, plus in-process registrations) and discovery/etcd. Only
// internal/server and tests import an implementation; everything else depends
// on this package alone. discovery/discoverytest holds the conformance suite
// every implementation passes.
//
// # Key schema
//
// Backends that keep instances in a key-value store use one key per instance:
//
//	<prefix>/services/<service>/<id>  →  JSON of Instance
//
// for example
//
//	/herald/services/room/room-7f3a  →  {"service":"room","id":"room-7f3a","addr":"10.0.0.7:9000","weight":1,"tags":{"track":"canary"}}
//
// <prefix> defaults to "/herald" and never ends in "/". The key is
// authoritative: a value whose "service" or "id" disagrees with its key is
// read with the key's values. Service names and IDs are therefore restricted
// (see [ValidateName]) so that a key splits back into exactly one
// (service, id) pair and a service's prefix never matches another service
// ("room/" does not match "room2/..."). [Key] and [ServicePrefix] build the
// keys, so a service written in another language can follow the same schema.
//
// # Concurrency
//
// [Instance] is a value; the Tags and Meta maps of instances handed out by a
// Registry are shared and must be treated as read-only. Every Registry is safe
// for concurrent use by multiple goroutines.
package discovery
