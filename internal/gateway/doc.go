// Package gateway is what each client command does: it implements the transport's
// Handler, decodes frames, holds the connect handshake and its deadline, checks
// permissions and limits, and turns sub, unsub, pub and ping into hub and broker
// calls with exactly one answer per request.
//
// A req goes to the router on a goroutine of its own (request.go): a game
// service may take up to its route's timeout, and neither the event loop nor the
// session's shard may wait that long. Its one answer is queued through the
// session's shard like every other reply. Session connect and disconnect events
// for services that asked for them go through a bounded queue and a few workers,
// off the connection's path.
//
// Calls for one connection arrive in order and never overlap (the transport's
// guarantee), so the per-connection state needs no lock except what the connect
// deadline timer shares with it.
package gateway
