// Package service is the Go SDK for game services behind Herald.
//
// A game service is a gRPC server implementing the GameService of
// protocol/backend.proto. Herald's router sends it the requests players make
// with a route "service.method" (for example "room.join"), and the service
// reaches players back through Herald's ServerAPI: push to a user or session,
// publish to a topic, broadcast, subscribe a session to a topic, kick.
//
// With this package a service is a few lines:
//
//	svc, err := service.New(service.Config{
//		Name:   "room",
//		Addr:   ":9000",
//		Etcd:   &service.EtcdConfig{Endpoints: []string{"10.0.0.5:2379"}},
//		Herald: "herald.internal:7071",
//		APIKey: os.Getenv("HERALD_API_KEY"),
//	})
//	svc.Handle("join", func(ctx context.Context, req *service.Request) ([]byte, error) {
//		if err := svc.Herald().Subscribe(ctx, req.Session, "room.lobby"); err != nil {
//			return nil, err
//		}
//		return []byte(`{"topic":"room.lobby"}`), nil
//	})
//	err = svc.Run(ctx)
//
// Run serves gRPC (with the standard health service), registers the instance
// in discovery (etcd: under a lease kept alive while the process lives, so a
// crashed instance disappears within the lease TTL), and on the end of ctx
// deregisters first, then finishes the calls in flight and stops.
//
// # Answers and errors
//
// A handler's data is the player's reply. A handler that returns a
// *protocol.Error answers the player with that code and reason: use codes
// 1000–1999 for the game's own errors, or one of Herald's error frame codes
// (for example protocol.CodeNotFound). A gRPC status error (package status) is
// passed to Herald as such: Unavailable and ResourceExhausted tell Herald the
// instance cannot serve, count against its circuit breaker and, for routes
// configured idempotent, move the request to another instance. Any other error
// answers "service error" (116) and is logged here, with its text kept out of
// the player's frame; a panic is recovered and reported to Herald as an
// internal failure of the instance.
//
// # Concurrency
//
// Handlers run concurrently, one goroutine per call, with the call's deadline
// (the route's timeout) in ctx: stop working when it ends, the player has been
// told the request timed out. Handle and OnSessionEvent must be called before
// Run; Herald may be called from any goroutine until Run returns.
package service
