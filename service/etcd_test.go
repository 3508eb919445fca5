package service_test

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/etcd"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/server"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
	"github.com/heraldgg/herald/service"
)

// startEtcd runs a single-member embedded etcd on loopback until the test
// ends and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	free := func() url.URL {
		// etcd takes its ports up front, so it cannot be handed port 0.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return url.URL{Scheme: "http", Host: l.Addr().String()}
	}
	cu, pu := free(), free()
	cfg := embed.NewConfig()
	cfg.Name = "service-test"
	cfg.Dir = t.TempDir()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed: %v", err)
	case <-time.After(within):
		t.Fatal("etcd not ready")
	}
	return cu.String()
}

// TestEtcdDiscovery runs a node and a game service that find each other
// through a real etcd: the service registers, the node routes to it, the node
// registers itself, and once the service stops requests are answered
// "unavailable" instead of hanging.
func TestEtcdDiscovery(t *testing.T) {
	endpoint := startEtcd(t)
	etcdCfg := etcd.Config{Endpoints: []string{endpoint}, LeaseTTL: 2 * time.Second}
	n := servertest.Start(t, func(c *config.Config) {
		c.Discovery.Kind = "etcd"
		c.Discovery.Etcd = etcdCfg.WithDefaults()
		c.Router.Services = map[string]router.ServiceConfig{"game": {Timeout: 2 * time.Second}}
	})

	svc, err := service.New(service.Config{Name: "game", ID: "g1", Etcd: &etcdCfg, Herald: n.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	svc.Handle("echo", func(_ context.Context, req *service.Request) ([]byte, error) { return req.Data, nil })
	stop := run(t, svc)

	c := dial(t, n, "alice", client.Config{})
	request := func(route string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return c.Request(ctx, route, []byte(`"hi"`), nil)
	}
	servertest.Eventually(t, within, "the node routes to the registered service", func() bool {
		got, err := request("game.echo")
		return err == nil && string(got) == `"hi"`
	})
	// The node's own demo service registered in etcd too; its registration and the
	// game service's reach the node's watch independently.
	servertest.Eventually(t, within, "the node routes to its demo service through etcd", func() bool {
		got, err := request("demo.echo")
		return err == nil && string(got) == `"hi"`
	})

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: within})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	servertest.Eventually(t, within, "the node registered itself", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		resp, err := cli.Get(ctx, discovery.Key(etcd.DefaultPrefix, server.NodeService, n.Node()))
		return err == nil && len(resp.Kvs) == 1
	})

	stop()
	servertest.Eventually(t, within, "requests answered unavailable once the service is gone", func() bool {
		_, err := request("game.echo")
		return codeOf(err) == protocol.CodeUnavailable
	})
	resp, err := cli.Get(context.Background(), discovery.ServicePrefix(etcd.DefaultPrefix, "game"), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("game instances left in etcd: %v, %v", resp, err)
	}
}
