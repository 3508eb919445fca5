package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/protocol"
)

// GRPC serves the ServerAPI of protocol/backend.proto over gRPC, on the same
// Service as the admin HTTP API. When an API key is set, every call must carry
// the gRPC metadata "authorization: Bearer <key>", compared in constant time;
// the standard health service is served without it, so probes need no secret.
type GRPC struct {
	protocol.UnimplementedServerAPIServer

	// Immutable after NewGRPC.
	svc    *Service
	key    []byte
	log    *slog.Logger
	srv    *grpc.Server
	health *health.Server

	mu sync.Mutex
	// Guarded by mu.
	ln   net.Listener
	done chan struct{} // closed when Serve returns
}

var _ protocol.ServerAPIServer = (*GRPC)(nil)

// NewGRPC returns the gRPC server API for svc; apiKey "" means no key is
// required (the listener should then stay on loopback). It does no I/O.
func NewGRPC(svc *Service, apiKey string, log *slog.Logger) *GRPC {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &GRPC{svc: svc, log: log, health: health.NewServer()}
	if apiKey != "" {
		g.key = []byte(apiKey)
	}
	g.srv = grpc.NewServer(grpc.ChainUnaryInterceptor(g.auth))
	protocol.RegisterServerAPIServer(g.srv, g)
	healthpb.RegisterHealthServer(g.srv, g.health)
	return g
}

// Start listens on addr and serves in the background until Shutdown.
func (g *GRPC) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", addr, err)
	}
	g.mu.Lock()
	g.ln, g.done = ln, make(chan struct{})
	done := g.done
	g.mu.Unlock()
	go func() {
		defer close(done)
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			g.log.Error("api: gRPC serve failed", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address, or nil before Start.
func (g *GRPC) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// Shutdown stops accepting calls and waits for those in flight until ctx ends,
// then cuts the rest.
func (g *GRPC) Shutdown(ctx context.Context) error {
	g.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		g.srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		g.srv.Stop()
		<-stopped
	}
	g.mu.Lock()
	done := g.done
	g.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}

func (g *GRPC) auth(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if g.key == nil || strings.HasPrefix(info.FullMethod, "/grpc.health.") {
		return next(ctx, req)
	}
	var got string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			got, _ = strings.CutPrefix(v[0], "Bearer ")
		}
	}
	if subtle.ConstantTimeCompare([]byte(got), g.key) != 1 {
		g.log.Warn("api: gRPC call without a valid API key", "method", info.FullMethod)
		return nil, status.Error(codes.Unauthenticated, "missing or wrong API key")
	}
	return next(ctx, req)
}

// Push implements protocol.ServerAPIServer.
func (g *GRPC) Push(ctx context.Context, r *protocol.PushRequest) (*protocol.PushReply, error) {
	if err := g.svc.Push(ctx, r.User, r.Session, r.Data); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.PushReply{}, nil
}

// Publish implements protocol.ServerAPIServer.
func (g *GRPC) Publish(ctx context.Context, r *protocol.PublishRequest) (*protocol.PublishReply, error) {
	pos, err := g.svc.PublishAs(ctx, r.Topic, r.User, r.Data)
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.PublishReply{Offset: pos.Offset, Epoch: pos.Epoch}, nil
}

// Broadcast implements protocol.ServerAPIServer.
func (g *GRPC) Broadcast(ctx context.Context, r *protocol.BroadcastRequest) (*protocol.BroadcastReply, error) {
	if err := g.svc.Broadcast(ctx, r.Data); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.BroadcastReply{}, nil
}

// BroadcastRegion implements protocol.ServerAPIServer.
func (g *GRPC) BroadcastRegion(ctx context.Context, r *protocol.BroadcastRegionRequest) (*protocol.BroadcastRegionReply, error) {
	a := hub.Area{Map: r.Map, X: r.X, Y: r.Y}
	switch area := r.Area.(type) {
	case *protocol.BroadcastRegionRequest_Radius:
		a.Radius = area.Radius
	case *protocol.BroadcastRegionRequest_Rect:
		if area.Rect == nil {
			return nil, status.Error(codes.InvalidArgument, "rect is empty")
		}
		a.Rect = true
		a.MinX, a.MinY, a.MaxX, a.MaxY = area.Rect.MinX, area.Rect.MinY, area.Rect.MaxX, area.Rect.MaxY
	default:
		return nil, status.Error(codes.InvalidArgument, "give a radius or a rect")
	}
	if err := g.svc.BroadcastRegion(ctx, a, r.Exclude, r.Data); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.BroadcastRegionReply{}, nil
}

// Subscribe implements protocol.ServerAPIServer.
func (g *GRPC) Subscribe(ctx context.Context, r *protocol.SubscribeRequest) (*protocol.SubscribeReply, error) {
	if err := g.svc.Subscribe(ctx, r.User, r.Session, r.Topic); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.SubscribeReply{}, nil
}

// Unsubscribe implements protocol.ServerAPIServer.
func (g *GRPC) Unsubscribe(ctx context.Context, r *protocol.UnsubscribeRequest) (*protocol.UnsubscribeReply, error) {
	if err := g.svc.Unsubscribe(ctx, r.User, r.Session, r.Topic); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.UnsubscribeReply{}, nil
}

// SetPosition implements protocol.ServerAPIServer.
func (g *GRPC) SetPosition(ctx context.Context, r *protocol.SetPositionRequest) (*protocol.SetPositionReply, error) {
	if err := g.svc.SetPosition(ctx, r.Session, r.Map, r.X, r.Y); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.SetPositionReply{}, nil
}

// Kick implements protocol.ServerAPIServer.
func (g *GRPC) Kick(ctx context.Context, r *protocol.KickRequest) (*protocol.KickReply, error) {
	if err := g.svc.Kick(ctx, r.User, r.Session, r.Reason); err != nil {
		return nil, grpcStatus(err)
	}
	return &protocol.KickReply{}, nil
}

// grpcStatus turns a Service error into the status backend.proto promises:
// InvalidArgument for a bad field, NotFound, Unavailable when the broker is
// down, DeadlineExceeded.
func grpcStatus(err error) error {
	var p *protocol.Error
	if !errors.As(err, &p) {
		return status.Error(codes.Internal, err.Error())
	}
	c := codes.Internal
	switch p.Code {
	case protocol.CodeBadRequest, protocol.CodeBadTopic, protocol.CodeBadPosition:
		c = codes.InvalidArgument
	case protocol.CodeNotFound:
		c = codes.NotFound
	case protocol.CodeUnavailable:
		c = codes.Unavailable
	case protocol.CodeTimeout:
		c = codes.DeadlineExceeded
	case protocol.CodePermissionDenied:
		c = codes.PermissionDenied
	case protocol.CodeRateLimited, protocol.CodeLimitExceeded, protocol.CodeOverloaded:
		c = codes.ResourceExhausted
	}
	return status.Error(c, p.Reason)
}
