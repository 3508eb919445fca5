package transport

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/lesismal/nbio/logging"
)

// pausableListener lets a draining node stop accepting while its event loops keep
// serving. nbio's accept loop retries without pause on any error other than a
// timeout until the engine shuts down, so simply closing the listener would make it
// spin; instead, once stopped, Accept closes the socket (refusing new clients at
// once) and parks until the engine closes the listener.
type pausableListener struct {
	net.Listener
	stopped   chan struct{}
	closed    chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
}

func newPausableListener(ln net.Listener) *pausableListener {
	return &pausableListener{Listener: ln, stopped: make(chan struct{}), closed: make(chan struct{})}
}

func (l *pausableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		return c, nil
	}
	select {
	case <-l.stopped:
		<-l.closed
		return nil, net.ErrClosed
	default:
		return nil, err
	}
}

// Stop closes the socket; Accept parks until Close.
func (l *pausableListener) Stop() {
	l.stopOnce.Do(func() {
		close(l.stopped)
		_ = l.Listener.Close()
	})
}

func (l *pausableListener) Close() error {
	l.Stop()
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// nbio logs through a process-wide logger of its own. Herald routes it, once, into
// the first listener's slog logger so its lines share the node's format; nbio's
// informational chatter goes to debug.
var nbioLogOnce sync.Once

type nbioLogger struct{ log atomic.Pointer[slog.Logger] }

func routeNBIOLogs(log *slog.Logger) {
	nbioLogOnce.Do(func() {
		l := &nbioLogger{}
		l.log.Store(log.With("component", "nbio"))
		logging.SetLogger(l)
	})
}

func (l *nbioLogger) Debug(format string, v ...any) { l.log.Load().Debug(fmt.Sprintf(format, v...)) }
func (l *nbioLogger) Info(format string, v ...any)  { l.log.Load().Debug(fmt.Sprintf(format, v...)) }
func (l *nbioLogger) Warn(format string, v ...any)  { l.log.Load().Warn(fmt.Sprintf(format, v...)) }
func (l *nbioLogger) Error(format string, v ...any) { l.log.Load().Error(fmt.Sprintf(format, v...)) }
