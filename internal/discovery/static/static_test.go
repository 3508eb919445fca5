package static_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/discoverytest"
	"github.com/heraldgg/herald/internal/discovery/static"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	discoverytest.Run(t, func(t *testing.T) discovery.Registry {
		r, err := static.New(static.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
}

func TestConfiguredInstances(t *testing.T) {
	r, err := static.New(static.Config{Services: map[string][]discovery.Instance{
		"room": {
			{ID: "room-b", Addr: "127.0.0.1:9002"},
			{ID: "room-a", Addr: "127.0.0.1:9001", Weight: 2},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan []discovery.Instance, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- r.Watch(ctx, "room", func(set []discovery.Instance) {
			select {
			case got <- set:
			default:
			}
		})
	}()
	want := []discovery.Instance{
		{Service: "room", ID: "room-a", Addr: "127.0.0.1:9001", Weight: 2},
		{Service: "room", ID: "room-b", Addr: "127.0.0.1:9002"},
	}
	select {
	case set := <-got:
		if diff := cmp.Diff(want, set); diff != "" {
			t.Errorf("first set (-want +got):\n%s", diff)
		}
	case <-ctx.Done():
		t.Fatal("no first set")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v, want context.Canceled", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name     string
		services map[string][]discovery.Instance
	}{
		{"invalid instance", map[string][]discovery.Instance{"room": {{ID: "a"}}}},
		{"wrong service", map[string][]discovery.Instance{"room": {{Service: "chat", ID: "a", Addr: "x:1"}}}},
		{"duplicate id", map[string][]discovery.Instance{"room": {{ID: "a", Addr: "x:1"}, {ID: "a", Addr: "x:2"}}}},
		{"invalid service name", map[string][]discovery.Instance{"ro/om": {{ID: "a", Addr: "x:1"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := static.New(static.Config{Services: tc.services})
			if !errors.Is(err, discovery.ErrInvalidInstance) {
				t.Errorf("New error = %v, want ErrInvalidInstance", err)
			}
		})
	}
}
