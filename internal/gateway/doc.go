// Package gateway is what each client command does: it implements the transport's
// Handler, decodes frames, holds the connect handshake and its deadline, checks
// permissions and limits, and turns sub, unsub, pub and ping into hub and broker
// calls with exactly one answer per request.
//
// Calls for one connection arrive in order and never overlap (the transport's
// guarantee), so the per-connection state needs no lock except what the connect
// deadline timer shares with it.
package gateway
