// Package protocol is Herald's wire contract with game clients: the envelope
// (generated from herald.proto), its two codecs (JSON and Protobuf), the raw-TCP
// framing, and the table of error and disconnect codes.
//
// Clients import this package; it imports nothing of Herald's. Every decoder here
// takes bytes straight from the network, so none of them may panic, and each is
// covered by a fuzz target.
//
// A message is encoded once per codec however many players receive it: callers
// encode with AppendJSON / AppendProto into a buffer they own and share the result.
package protocol
