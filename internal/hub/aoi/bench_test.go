package aoi

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The benchmark world: a 10,000 × 10,000 map with entities spread uniformly,
// queried at radius 100, the scale of a game's "players near me".
const (
	benchSide   = 10000
	benchRadius = 100
	benchCell   = 100
)

type benchWorld struct {
	g       *Grid
	flat    []member // the same entities as one slice, for the brute-force baseline
	centres [][2]float64
}

var benchWorlds = map[[2]float64]*benchWorld{}

// benchWorldFor returns, building it once per process, n entities on a grid of cell
// size cs, with query centres precomputed so that the RNG stays out of the
// measured loop.
func benchWorldFor(b *testing.B, n int, cs float64) *benchWorld {
	b.Helper()
	key := [2]float64{float64(n), cs}
	if w, ok := benchWorlds[key]; ok {
		return w
	}
	g := newGrid(b, Config{Width: benchSide, Height: benchSide, CellSize: cs})
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	w := &benchWorld{g: g, flat: make([]member, 0, n), centres: make([][2]float64, 4096)}
	for id := range uint64(n) {
		x, y := rng.Float64()*benchSide, rng.Float64()*benchSide
		if err := g.Insert(id, x, y); err != nil {
			b.Fatal(err)
		}
		w.flat = append(w.flat, member{id: id, x: x, y: y})
	}
	for i := range w.centres {
		w.centres[i] = [2]float64{rng.Float64() * benchSide, rng.Float64() * benchSide}
	}
	benchWorlds[key] = w
	return w
}

var benchSizes = []int{1000, 10000, 100000}

// BenchmarkQueryCircle compares the grid with the scan it replaces, which
// tests every entity on the map. hits/op, the mean number of ids found, shows
// both do the same job (it differs in the decimals only because each runs a
// different number of the precomputed centres).
func BenchmarkQueryCircle(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("grid/n=%d", n), func(b *testing.B) {
			w := benchWorldFor(b, n, benchCell)
			hits, i := 0, 0
			count := func(uint64) bool { hits++; return true }
			for b.Loop() {
				c := w.centres[i%len(w.centres)]
				i++
				w.g.QueryCircle(c[0], c[1], benchRadius, count)
			}
			b.ReportMetric(float64(hits)/float64(i), "hits/op")
		})
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("brute/n=%d", n), func(b *testing.B) {
			w := benchWorldFor(b, n, benchCell)
			hits, i := 0, 0
			count := func(uint64) bool { hits++; return true }
			for b.Loop() {
				c := w.centres[i%len(w.centres)]
				i++
				bruteCircle(w.flat, c[0], c[1], benchRadius, count)
			}
			b.ReportMetric(float64(hits)/float64(i), "hits/op")
		})
	}
}

func bruteCircle(ms []member, x, y, r float64, fn func(uint64) bool) {
	r2 := r * r
	for _, m := range ms {
		if within(m.x-x, m.y-y, r2) && !fn(m.id) {
			return
		}
	}
}

// BenchmarkCellSize backs the package doc's advice to size cells near the
// query radius.
func BenchmarkCellSize(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		for _, cs := range []float64{12.5, 25, 50, 100, 200, 400, 1000} {
			b.Run(fmt.Sprintf("n=%d/cell=%v", n, cs), func(b *testing.B) {
				w := benchWorldFor(b, n, cs)
				hits, i := 0, 0
				count := func(uint64) bool { hits++; return true }
				for b.Loop() {
					c := w.centres[i%len(w.centres)]
					i++
					w.g.QueryCircle(c[0], c[1], benchRadius, count)
				}
				b.ReportMetric(float64(hits)/float64(i), "hits/op")
			})
		}
	}
}

// BenchmarkCellStore backs the dense cell table: the same query against the
// same cells held in a map from cell index to members, the layout one would
// pick for huge sparse maps.
func BenchmarkCellStore(b *testing.B) {
	for _, cs := range []float64{25, 100} {
		w := benchWorldFor(b, 10000, cs)
		sparse := make(map[int][]member)
		for c, ms := range w.g.cells {
			if len(ms) > 0 {
				sparse[c] = ms
			}
		}
		b.Run(fmt.Sprintf("dense/cell=%v", cs), func(b *testing.B) {
			hits, i := 0, 0
			count := func(uint64) bool { hits++; return true }
			for b.Loop() {
				c := w.centres[i%len(w.centres)]
				i++
				w.g.QueryCircle(c[0], c[1], benchRadius, count)
			}
			b.ReportMetric(float64(hits)/float64(i), "hits/op")
		})
		b.Run(fmt.Sprintf("map/cell=%v", cs), func(b *testing.B) {
			hits, i := 0, 0
			count := func(uint64) bool { hits++; return true }
			for b.Loop() {
				c := w.centres[i%len(w.centres)]
				i++
				sparseCircle(w.g, sparse, c[0], c[1], benchRadius, count)
			}
			b.ReportMetric(float64(hits)/float64(i), "hits/op")
		})
	}
}

// sparseCircle is QueryCircle over a map-held cell table.
func sparseCircle(g *Grid, cells map[int][]member, x, y, r float64, fn func(uint64) bool) {
	s, r2, ok := g.circle(x, y, r)
	if !ok {
		return
	}
	for row := s.r0; row <= s.r1; row++ {
		for col := s.c0; col <= s.c1; col++ {
			for _, m := range cells[row*g.cols+col] {
				if within(m.x-x, m.y-y, r2) && !fn(m.id) {
					return
				}
			}
		}
	}
}

// BenchmarkMove measures the update every player's position report costs,
// on the 10,000-entity world. Each case walks one entity per iteration,
// cycling through all of them so that caches are not flattered.
func BenchmarkMove(b *testing.B) {
	const n = 10000
	type kind int
	const (
		withinCell  kind = iota // a jitter that never leaves its cell
		walk                    // a player's step of up to 5: a few cross a cell edge
		acrossCells             // every move lands in another cell
	)
	cases := []struct {
		name string
		kind kind
	}{
		{"within-cell", withinCell},
		{"walk", walk},
		{"across-cells", acrossCells},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			w := benchWorldFor(b, n, benchCell)
			// A private grid, so that moving leaves the shared world as the
			// query benchmarks expect it.
			g := newGrid(b, Config{Width: benchSide, Height: benchSide, CellSize: benchCell})
			pos := make([][2]float64, n)
			for _, m := range w.flat {
				if err := g.Insert(m.id, m.x, m.y); err != nil {
					b.Fatal(err)
				}
				pos[m.id] = [2]float64{m.x, m.y}
			}
			rng := rand.New(rand.NewPCG(3, 4))
			targets := make([][2]float64, 4*n)
			for i := range targets {
				p := &pos[i%n]
				switch tc.kind {
				case withinCell:
					cx, cy := float64(int(p[0]/benchCell))*benchCell, float64(int(p[1]/benchCell))*benchCell
					targets[i] = [2]float64{cx + rng.Float64()*benchCell, cy + rng.Float64()*benchCell}
				case walk:
					p[0] = min(max(p[0]+(rng.Float64()*2-1)*5, 0), benchSide-1)
					p[1] = min(max(p[1]+(rng.Float64()*2-1)*5, 0), benchSide-1)
					targets[i] = *p
				case acrossCells:
					// At least one cell width east, wrapping at the map's edge.
					p[0] = float64(int(p[0]+benchCell+rng.Float64()*benchCell) % benchSide)
					targets[i] = *p
				}
			}
			i := 0
			for b.Loop() {
				t := targets[i%len(targets)]
				if err := g.Move(uint64(i%n), t[0], t[1]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkMoveDiff is a walking step plus the enter/leave events it causes,
// at the query radius, on the 10,000-entity world.
func BenchmarkMoveDiff(b *testing.B) {
	const n = 10000
	w := benchWorldFor(b, n, benchCell)
	g := newGrid(b, Config{Width: benchSide, Height: benchSide, CellSize: benchCell})
	pos := make([][2]float64, n)
	for _, m := range w.flat {
		if err := g.Insert(m.id, m.x, m.y); err != nil {
			b.Fatal(err)
		}
		pos[m.id] = [2]float64{m.x, m.y}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	targets := make([][2]float64, 4*n)
	for i := range targets {
		p := &pos[i%n]
		p[0] = min(max(p[0]+(rng.Float64()*2-1)*5, 0), benchSide-1)
		p[1] = min(max(p[1]+(rng.Float64()*2-1)*5, 0), benchSide-1)
		targets[i] = *p
	}
	entered, left := make([]uint64, 0, 64), make([]uint64, 0, 64)
	events, i := 0, 0
	for b.Loop() {
		t := targets[i%len(targets)]
		var err error
		entered, left, err = g.MoveDiff(uint64(i%n), t[0], t[1], benchRadius, entered[:0], left[:0])
		if err != nil {
			b.Fatal(err)
		}
		events += len(entered) + len(left)
		i++
	}
	b.ReportMetric(float64(events)/float64(i), "events/op")
}
