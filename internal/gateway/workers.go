package gateway

import (
	"sync"
	"time"
)

// workerIdle is how long a request worker waits for another request before it
// ends.
const workerIdle = 10 * time.Second

// workers runs routed requests on goroutines that outlive one request. A
// goroutine started per request grew its stack through gRPC's call path every
// time: runtime.copystack under the request goroutine was 4–5% of the
// process's CPU at 1,000 clients (docs/benchmarks.md, routed requests). A
// worker keeps its grown stack for the next request. Requests never queue: a
// request that finds no worker idle gets a new one, so a slow service cannot
// hold up the requests behind it.
type workers struct {
	jobs chan func() // unbuffered: a send succeeds only into an idle worker
	quit chan struct{}
	once sync.Once
}

func newWorkers() *workers {
	return &workers{jobs: make(chan func()), quit: make(chan struct{})}
}

// do runs fn on an idle worker, or on a new one.
func (w *workers) do(fn func()) {
	select {
	case w.jobs <- fn:
	default:
		go w.work(fn)
	}
}

func (w *workers) work(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		select {
		case fn = <-w.jobs:
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop ends the idle workers at once and the busy ones after their request.
func (w *workers) stop() { w.once.Do(func() { close(w.quit) }) }
