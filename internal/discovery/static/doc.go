// Package static is a discovery.Registry whose instances come from
// configuration, plus any registered in the same process.
//
// It is the default for a single node (Herald's demo service) and for tests.
// Nothing leaves the process: configured instances are always present,
// registered ones last until deregistered or until the Registry is closed, and
// there is no health signal beyond the process itself.
//
// # Concurrency
//
// One mutex guards the instance sets. Each service has a "changed" channel
// that is closed and replaced on every change, so a Watch call waits on a
// channel rather than polling, and Register never blocks on a slow watcher:
// watchers run their callbacks on their own goroutines and simply read the
// newest set when they wake.
package static
