package etcd

import (
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// testEtcd is a single-member embedded etcd on loopback ports, with its data
// in a temporary directory, that a test can stop and start again.
type testEtcd struct {
	dir    string
	client url.URL
	peer   url.URL

	e *embed.Etcd // nil while stopped
}

// startEtcd starts an embedded etcd that is stopped when the test ends.
func startEtcd(t testing.TB) *testEtcd {
	t.Helper()
	s := &testEtcd{dir: t.TempDir(), client: freeURL(t), peer: freeURL(t)}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

// endpoint is the client URL to give Config.Endpoints.
func (s *testEtcd) endpoint() string { return s.client.String() }

// start starts the server on s's ports and data directory, so a restart
// keeps both the address clients know and every key and lease.
func (s *testEtcd) start(t testing.TB) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "herald-test"
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
		t.Fatalf("etcd failed to start: %v", err)
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd not ready within 30s")
	}
	s.e = e
}

// stop stops the server; it is a no-op while stopped.
func (s *testEtcd) stop() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// freeURL returns an http URL on a loopback port that was free a moment ago.
// etcd needs its ports up front and must get the same ones back on restart,
// so it cannot be handed a listener on port 0.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}
