// Package client is Herald's Go client SDK: one player's connection to a Herald
// node, over WebSocket (ws://, wss://) or raw TCP (tcp://), in JSON or Protobuf.
// It is meant for games and bots written in Go, and for load generators (see
// Config.LocalAddr).
//
//	c, err := client.Dial(ctx, client.Config{
//		URL:       "ws://127.0.0.1:7000/ws",
//		User:      "alice",
//		OnMessage: func(m client.Message) { log.Printf("%s: %s", m.Kind.Name(), m.Data) },
//		OnFail:    func(err error) { log.Printf("herald: gave up: %v", err) },
//	})
//	if err != nil {
//		return err // nothing is left running
//	}
//	defer c.Close()
//
//	// Messages after pos, the last one stored, are replayed first when the node
//	// still has them.
//	_, err = c.Subscribe(ctx, "chat.lobby", func(m client.Message) {
//		log.Printf("%s #%d: %s", m.Topic, m.Offset, m.Data)
//	}, client.Since(pos))
//	at, err := c.Publish(ctx, "chat.lobby", []byte(`{"text":"gg"}`))
//	reply, err := c.Request(ctx, "lobby.join", []byte(`{"mode":"duel"}`), nil)
//	var perr *protocol.Error
//	if errors.As(err, &perr) && perr.Code == protocol.CodeNotFound {
//		// no game service serves lobby.join
//	}
//
// # Connection model
//
// Dial connects once and does not retry: its error is the caller's. After it
// the client keeps itself connected. It pings when it has sent nothing for the
// heartbeat interval the node announced, and drops a connection it heard
// nothing on for 1.5 intervals. When a connection drops it redials with
// exponential backoff and full jitter, and resubscribes every topic from the
// last message delivered, so that the node replays what was missed from its
// history: a subscription sees each message at most once, in offset order, with
// no gap unless the history is gone (reported to OnUnrecovered). A
// resubscription the new node refuses for a passing reason (its broker is down
// for a moment) is asked again until the node accepts it; one refused for good
// is reported to the subscription's OnError. A disconnect
// whose code is terminal (3500–3999, such as a kick), a frame over MaxFrameSize,
// or MaxRetries failed redials in a row end the client: OnFail is called, Done
// closes and Err says why. A drain (3000) is not terminal: the client redials,
// typically reaching another node.
//
// A load balancer in front of the cluster is one way to reach another node;
// Config.URLs is the other: further nodes of the same cluster, which Dial
// tries when URL fails and which redials rotate through, starting with the
// address after the one that dropped. A client whose node dies (a crash, a
// SIGKILL: the drop is a network error, not a drain) is back on a live node
// after one failed attempt per dead address at most, and resumes its
// subscriptions there from the last message delivered; with a Redis or NATS
// broker the nodes share each topic's offsets and history, so nothing is lost.
//
// A call (Subscribe, Publish, Request, Ping, …) made while the client is
// reconnecting waits for the new connection, within its context or
// RequestTimeout. A call in flight when its connection drops fails with an
// error wrapping ErrDisconnected: the node may or may not have acted on it.
// Failures the node reports are *protocol.Error; the code table and its ranges
// are in package protocol.
//
// # Threading
//
// The client's methods are safe for concurrent use. Every handler — the
// subscription handlers, OnMessage, OnEvent, OnUnrecovered, OnError,
// OnDisconnect, OnReconnect and OnFail — runs on the client's one reader
// goroutine, one at a time, in the order the frames arrived. So handlers need
// no locking against each other, but while one runs nothing else is read, not
// even the answers to heartbeat pings: a handler must hand slow work to another
// goroutine. For the same reason a handler must not make a call that waits for
// the node's answer (Subscribe, Unsubscribe, Publish, Request, Move, Ping),
// which only the blocked reader could deliver, nor call Close, which waits for
// the reader to end: start a goroutine for them. Message.Data belongs to the
// handler.
//
// Each client owns one goroutine and, while connected, one timer (and one per
// resubscription waiting to be asked again); Close stops them before it returns.
package client
