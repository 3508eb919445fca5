package hub

import (
	"sync"
	"testing"
)

func TestRingOrderPerProducer(t *testing.T) {
	const producers, each = 4, 20000
	r := newRing[[2]int](64)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				for !r.push([2]int{p, i}) {
				}
			}
		})
	}
	next := make([]int, producers)
	for got := 0; got < producers*each; {
		v, ok := r.pop()
		if !ok {
			continue
		}
		if v[1] != next[v[0]] {
			t.Fatalf("producer %d: got %d, want %d", v[0], v[1], next[v[0]])
		}
		next[v[0]]++
		got++
	}
	wg.Wait()
	if _, ok := r.pop(); ok {
		t.Fatal("ring not empty")
	}
}

func TestRingFull(t *testing.T) {
	r := newRing[int](3) // rounds up to 4
	for i := range 4 {
		if !r.push(i) {
			t.Fatalf("push %d refused", i)
		}
	}
	if r.push(4) {
		t.Fatal("push into a full ring accepted")
	}
	if v, _ := r.pop(); v != 0 {
		t.Fatalf("pop = %d", v)
	}
	if !r.push(4) {
		t.Fatal("push after pop refused")
	}
	if r.len() != 4 {
		t.Fatalf("len = %d", r.len())
	}
}

func BenchmarkRingPushPop(b *testing.B) {
	r := newRing[item](1024)
	it := item{kind: itemTopic}
	b.ReportAllocs()
	for b.Loop() {
		r.push(it)
		r.pop()
	}
}

func BenchmarkRingContended(b *testing.B) {
	r := newRing[item](65536)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
				r.pop()
			}
		}
	}()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		it := item{kind: itemTopic}
		for pb.Next() {
			for !r.push(it) {
			}
		}
	})
	close(done)
}
