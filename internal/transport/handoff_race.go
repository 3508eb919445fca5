//go:build race

package transport

import (
	"sync"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// nbhttp accepts a connection on one goroutine and reads it on an event loop; the
// epoll registration in between orders the two, but the race detector cannot see
// it and reports the connection's address as raced. Under -race only, a mutex
// released when nbhttp announces the connection (OnOpen, before registering it) and
// acquired before each read event gives the detector the edge it needs. Production
// builds do not pay for it.
func raceHandoff(engine *nbhttp.Engine) (release func()) {
	var mu sync.Mutex
	release = func() {
		mu.Lock()
		//lint:ignore SA2001 the empty critical section is the point: it orders, it guards nothing
		mu.Unlock()
	}
	engine.OnData(func(c *nbio.Conn, data []byte) {
		mu.Lock()
		//lint:ignore SA2001 see above
		mu.Unlock()
		c.DataHandler()(c, data)
	})
	return release
}
