package gateway

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// Requests never wait for each other: with every worker busy, the next one gets
// a worker of its own.
func TestWorkersDoNotQueue(t *testing.T) {
	w := newWorkers()
	defer w.stop()
	const n = 50
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		w.do(func() {
			started.Done()
			<-release
		})
	}
	done := make(chan struct{})
	go func() { started.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("blocked requests held up the ones after them")
	}
	close(release)
}

// An idle worker takes the next request, and stop ends the idle workers.
func TestWorkersReuseAndStop(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers()
	ran := make(chan struct{})
	job := func() { ran <- struct{}{} }
	w.do(job)
	<-ran
	for range 100 {
		// A send on jobs succeeds only into an idle worker.
		select {
		case w.jobs <- job:
		case <-time.After(10 * time.Second):
			t.Fatal("the worker did not come back for the next request")
		}
		<-ran
	}
	if n := runtime.NumGoroutine(); n > before+1 {
		t.Errorf("%d goroutines for sequential requests, want %d", n, before+1)
	}
	w.stop()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in time: %d goroutines", runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
}
