package clustertest

import (
	"context"
	"testing"

	"github.com/heraldgg/herald/internal/broker/nats/natstest"
	"github.com/heraldgg/herald/internal/broker/redis/redistest"
)

// TestRedisRestart kills Redis with SIGKILL mid-stream, lets the publisher run
// into the outage for a second, and starts it again on the same port. Without
// persistence every topic's history is gone: each subscription must learn it
// from a new epoch (or OnUnrecovered). With appendonly nothing acknowledged is
// lost, so every successful publish must arrive and no one is told otherwise.
func TestRedisRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		persist bool
	}{
		{"volatile", false},
		{"appendonly", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []redistest.Option
			if tc.persist {
				opts = append(opts, redistest.Persistent())
			}
			srv := redistest.Start(t, opts...)
			r := begin(t, startNodes(t, srv.URL()))
			r.inject("Redis killed", srv.Kill)
			r.pub.waitAttempted(t, publishRate)
			r.recover("Redis restarted", srv.Restart)
			v := r.finish()
			if v.failed == 0 {
				t.Error("no publish failed while Redis was down")
			}
			told := v.epochSwitches + v.notices
			switch {
			case tc.persist && (told != 0 || v.excused != 0):
				t.Errorf("with appendonly, %d subscriptions were told history was lost (%d deliveries excused)", told, v.excused)
			case !tc.persist && told < players*topicsEach:
				t.Errorf("without persistence, only %d of %d subscriptions were told history was lost", told, players*topicsEach)
			}
		})
	}
}

// TestRedisFrozen stops Redis with SIGSTOP for about 3 s: connections stay
// open and nothing answers. Publishes must fail after the broker's timeout
// rather than succeed late; nothing is lost, so no one is told otherwise.
func TestRedisFrozen(t *testing.T) {
	srv := redistest.Start(t)
	r := begin(t, startNodes(t, srv.URL()))
	r.inject("Redis frozen (SIGSTOP)", srv.Stop)
	r.pub.waitAttempted(t, publishRate*3)
	r.recover("Redis resumed (SIGCONT)", srv.Cont)
	v := r.finish()
	if v.failed == 0 {
		t.Error("no publish failed while Redis was frozen")
	}
	expectNothingLost(t, v)
}

// TestRedisPubSubKilled has Redis close every Pub/Sub connection (CLIENT KILL
// TYPE pubsub) while the command connections live on: each node must notice,
// resubscribe and read what it missed from the streams.
func TestRedisPubSubKilled(t *testing.T) {
	srv := redistest.Start(t)
	r := begin(t, startNodes(t, srv.URL()))
	r.inject("Redis Pub/Sub links killed", func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if _, err := srv.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatal(err)
		}
	})
	r.recover("nothing (the nodes reconnect by themselves)", nil)
	v := r.finish()
	// The command connections live on, so publishes should not fail; on a
	// machine starved by other work some time out (and rueidis may drop a
	// connection it could not serve), which says nothing about the fault, so
	// this is reported rather than failed.
	if v.failed != 0 {
		t.Logf("%d publishes failed, though only the Pub/Sub links were cut: was the machine busy?", v.failed)
	}
	expectNothingLost(t, v)
	expectReconnects(t, r.nodes)
}

// TestNATSRestart shuts the NATS server down, lets the publisher run into the
// outage for a second, and starts it again with its JetStream store: history
// survives, so nothing acknowledged may be lost.
func TestNATSRestart(t *testing.T) {
	srv := natstest.Start(t)
	r := begin(t, startNodes(t, srv.URL()))
	r.inject("NATS shut down", srv.Shutdown)
	r.pub.waitAttempted(t, publishRate)
	r.recover("NATS restarted with its store", srv.Restart)
	v := r.finish()
	if v.failed == 0 {
		t.Error("no publish failed while NATS was down")
	}
	expectNothingLost(t, v)
	expectReconnects(t, r.nodes)
}

// TestNodeKilled runs the nodes as processes and kills one with SIGKILL: no
// drain, no disconnect frame. Its players redial the next address of their
// URLs and resume on the other nodes from Redis's history; the publisher
// leaves the dead node out, as a load balancer would once its health check
// fails.
func TestNodeKilled(t *testing.T) {
	srv := redistest.Start(t)
	nodes := startProcs(t, srv.URL())
	r := begin(t, nodes)
	victim := nodes[2]
	r.inject("node "+victim.name+" killed (SIGKILL)", func() {
		victim.proc.kill(t)
		r.pub.use(nodes[0], nodes[1])
	})
	r.recover("nothing (its players move to the other nodes)", nil)
	v := r.finish()
	expectNothingLost(t, v)
	var moved int
	for _, p := range r.players {
		if p.id%len(nodes) == 2 && p.reconnects.Load() > 0 && p.c.Node() != victim.name {
			moved++
		}
	}
	if want := players / len(nodes); moved != want {
		t.Errorf("%d of the %d players of the killed node moved to another node", moved, want)
	}
}

// expectNothingLost checks a scenario in which history survives: no
// subscription may be told it lost anything.
func expectNothingLost(t testing.TB, v verdict) {
	t.Helper()
	if told := v.epochSwitches + v.notices; told != 0 || v.excused != 0 {
		t.Errorf("%d subscriptions were told history was lost (%d deliveries excused), though it survived", told, v.excused)
	}
}
