package router

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/etcd"
)

// testEtcd is a single-member embedded etcd on loopback that can be stopped
// and started again on the same ports and data.
type testEtcd struct {
	dir          string
	client, peer url.URL
	e            *embed.Etcd
}

func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	s := &testEtcd{dir: t.TempDir(), client: freeURL(t), peer: freeURL(t)}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *testEtcd) start(t *testing.T) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "router-test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.client}
	cfg.AdvertiseClientUrls = []url.URL{s.client}
	cfg.ListenPeerUrls = []url.URL{s.peer}
	cfg.AdvertisePeerUrls = []url.URL{s.peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		t.Fatalf("etcd failed: %v", err)
	case <-time.After(waitTimeout):
		e.Close()
		t.Fatal("etcd not ready")
	}
	s.e = e
}

func (s *testEtcd) stop() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// freeURL is a loopback URL on a port free a moment ago: etcd must get the
// same ports back when it restarts, so it cannot listen on port 0.
func freeURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

func newEtcdRegistry(t *testing.T, s *testEtcd) *etcd.Registry {
	t.Helper()
	r, err := etcd.New(etcd.Config{Endpoints: []string{s.client.String()}, Prefix: "/router-test", LeaseTTL: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestEtcdOutage: with etcd stopped, the router keeps routing on the last set
// it saw and no request fails; once etcd is back, the watch resumes and a new
// instance is routed to.
func TestEtcdOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	server := startEtcd(t)
	services := newEtcdRegistry(t, server) // the game services' side
	reg := newEtcdRegistry(t, server)      // Herald's side

	r, err := New(roomConfig(ServiceConfig{}), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, r: r}
	for _, id := range []string{"a", "b"} {
		s := startGame(t, &game{id: id})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, err := services.Register(ctx, discovery.Instance{Service: "room", ID: id, Addr: s.addr})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "room/"+id+" routed", func() bool { return e.has("room", id) })
	}

	users := []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"}
	l := &load{e: e, route: "room.join", users: users, workers: 4}
	l.start()
	l.waitSent(t, 200)
	server.stop()
	l.waitSent(t, 10_000)
	server.start(t)
	l.waitSent(t, 200)
	results := l.finish()
	for _, o := range results {
		if o.err != nil {
			t.Fatalf("request %s failed during the etcd outage: %v", o.id, o.err)
		}
	}
	t.Logf("%d requests across the outage, none failed", len(results))

	s := startGame(t, &game{id: "c"})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := services.Register(ctx, discovery.Instance{Service: "room", ID: "c", Addr: s.addr}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an instance registered after the outage to be routed", func() bool { return e.has("room", "c") })
}
