// Package transport accepts player connections — WebSocket on the client port's
// /ws path and raw TCP on its own port — on nbio event loops, and turns bytes into
// frames and frames into bytes. It knows framing and close codes, not sessions.
//
// # Model
//
// An idle connection holds no goroutine and no read buffer: each event loop reads
// into one shared buffer, and only an incomplete frame is copied aside. Complete
// frames are handed to the Handler through the connection's job list, so the calls
// for one Conn never overlap and arrive in order (Open, Frame…, Closed), on pool
// goroutines rather than on the event loop.
//
// Writes never block. The caller hands Write whole wire frames (built with
// AppendFrame, once per message, shared by every recipient); what the kernel does not
// take at once is copied into the loop's pooled buffers and sent when the socket is
// writable. Buffered reports those bytes, which is what the session's out-queue bound
// is checked against.
package transport
