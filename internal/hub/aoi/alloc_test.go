package aoi

import (
	"math/rand/v2"
	"testing"
)

// TestAllocs guards the hot paths' promise: once the grid has warmed up,
// moving and querying allocate nothing.
func TestAllocs(t *testing.T) {
	g := newGrid(t, Config{Width: 10000, Height: 10000, CellSize: 100})
	rng := rand.New(rand.NewPCG(1, 2))
	for id := range uint64(10000) {
		if err := g.Insert(id, rng.Float64()*10000, rng.Float64()*10000); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Insert(1<<40, 150, 150); err != nil {
		t.Fatal(err)
	}
	const mover = 1 << 40

	var flip bool
	// toggle alternates between two positions, so each run undoes the last.
	toggle := func(ax, ay, bx, by float64) (float64, float64) {
		flip = !flip
		if flip {
			return ax, ay
		}
		return bx, by
	}
	dst := make([]uint64, 0, 1024)
	entered, left := make([]uint64, 0, 1024), make([]uint64, 0, 1024)
	hits := 0
	count := func(uint64) bool { hits++; return true }

	tests := []struct {
		name string
		fn   func()
	}{
		{"Move within a cell", func() {
			x, y := toggle(150, 150, 160.5, 170.25)
			if err := g.Move(mover, x, y); err != nil {
				t.Fatal(err)
			}
		}},
		{"Move across cells", func() {
			x, y := toggle(150, 150, 250, 350)
			if err := g.Move(mover, x, y); err != nil {
				t.Fatal(err)
			}
		}},
		{"QueryCircle", func() { g.QueryCircle(5000, 5000, 300, count) }},
		{"QueryCircle off the map", func() { g.QueryCircle(-50, 10050, 300, count) }},
		{"QueryRect", func() { g.QueryRect(4000, 4000, 4500, 4700, count) }},
		{"AppendCircle", func() { dst = g.AppendCircle(dst[:0], 5000, 5000, 300) }},
		{"AppendRect", func() { dst = g.AppendRect(dst[:0], 4000, 4000, 4500, 4700) }},
		{"MoveDiff across cells", func() {
			x, y := toggle(150, 150, 290, 240)
			var err error
			entered, left, err = g.MoveDiff(mover, x, y, 100, entered[:0], left[:0])
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"RemoveDiff then InsertDiff", func() {
			var ok bool
			if left, ok = g.RemoveDiff(mover, 100, left[:0]); !ok {
				t.Fatal("RemoveDiff: not found")
			}
			var err error
			if entered, err = g.InsertDiff(mover, 150, 150, 100, entered[:0]); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn() // warm up: the first move into a cell may grow it
			tt.fn()
			if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
				t.Errorf("%s: %v allocations per run, want 0", tt.name, n)
			}
		})
	}
	if hits == 0 {
		t.Error("the queries found no one; the test measures nothing")
	}
}
