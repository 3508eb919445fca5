// Package etcd is a discovery.Registry on etcd v3, using the key schema of
// package discovery: <Prefix>/services/<service>/<id> → JSON of the instance.
//
// # Registration
//
// Register grants a lease of Config.LeaseTTL, puts the instance's key under
// it, and keeps the lease alive from a goroutine owned by the Registry. If
// the process dies the keepalives stop and etcd deletes the key when the lease
// expires, so a dead instance disappears within LeaseTTL. If the lease is lost
// while the process lives (etcd was down for longer than the TTL, or lost its
// data), the goroutine grants a fresh lease and puts the key again, retrying
// with backoff until etcd answers. It re-puts the key only if the key is
// absent or still holds this registration's value, so it never overwrites a
// newer registration of the same ID.
//
// # Watch
//
// Watch reads the service's prefix (Get), delivers the set, then follows an
// etcd watch from the revision after that Get, so no change between the two
// is lost. When the watch fails (compaction, leader loss, a closed stream) it
// keeps the last delivered set, backs off, and resynchronizes with a fresh
// Get. While etcd is unreachable the etcd client retries the stream itself
// and resumes from the last revision it saw, so the set is never reported
// empty merely because etcd cannot be reached.
//
// # Concurrency and ownership
//
// A Registry owns one etcd client, one keepalive goroutine per live
// registration, and nothing else; Watch runs on its caller's goroutine. Close
// cancels and waits for every goroutine the Registry started. New does no
// network I/O: the client connects on first use.
package etcd
