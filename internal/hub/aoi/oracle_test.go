package aoi

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// oracle is the brute-force model the Grid must agree with: a flat table of
// positions, every query a full scan. It restates the documented rules
// rather than sharing code with the Grid, so that a bug in one is not
// copied into the other.
type oracle struct {
	width, height float64
	pos           map[uint64][2]float64
}

func newOracle(width, height float64) *oracle {
	return &oracle{width: width, height: height, pos: make(map[uint64][2]float64)}
}

func (o *oracle) inBounds(x, y float64) bool {
	return !math.IsNaN(x) && !math.IsNaN(y) && x >= 0 && x < o.width && y >= 0 && y < o.height
}

func (o *oracle) insert(id uint64, x, y float64) error {
	if !o.inBounds(x, y) {
		return ErrOutOfBounds
	}
	if _, ok := o.pos[id]; ok {
		return ErrExists
	}
	o.pos[id] = [2]float64{x, y}
	return nil
}

func (o *oracle) move(id uint64, x, y float64) error {
	if !o.inBounds(x, y) {
		return ErrOutOfBounds
	}
	if _, ok := o.pos[id]; !ok {
		return ErrNotFound
	}
	o.pos[id] = [2]float64{x, y}
	return nil
}

func (o *oracle) remove(id uint64) bool {
	_, ok := o.pos[id]
	delete(o.pos, id)
	return ok
}

// inCircle is the documented predicate, written out independently of the
// package's within. The conversions matter here too: without them an
// FMA-capable compiler could disagree with the Grid on boundary cases.
func inCircle(p [2]float64, x, y, r float64) bool {
	if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) || math.IsNaN(r) || r < 0 {
		return false
	}
	dx, dy := p[0]-x, p[1]-y
	return float64(dx*dx)+float64(dy*dy) <= r*r
}

// circle returns the sorted ids within r of (x, y), except skip.
func (o *oracle) circle(x, y, r float64, skip ...uint64) []uint64 {
	var ids []uint64
	for id, p := range o.pos {
		if inCircle(p, x, y, r) && !slices.Contains(skip, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (o *oracle) rect(minX, minY, maxX, maxY float64) []uint64 {
	var ids []uint64
	for id, p := range o.pos {
		if p[0] >= minX && p[0] <= maxX && p[1] >= minY && p[1] <= maxY {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// moveDiff returns what MoveDiff should report, without moving.
func (o *oracle) moveDiff(id uint64, x, y, r float64) (entered, left []uint64) {
	old := o.pos[id]
	for other, p := range o.pos {
		if other == id {
			continue
		}
		was, is := inCircle(p, old[0], old[1], r), inCircle(p, x, y, r)
		switch {
		case is && !was:
			entered = append(entered, other)
		case was && !is:
			left = append(left, other)
		}
	}
	slices.Sort(entered)
	slices.Sort(left)
	return entered, left
}

// sorted returns a sorted copy, so that unordered results compare equal.
func sorted(ids []uint64) []uint64 {
	return slices.Sorted(slices.Values(ids))
}

// cmpIDs treats nil and empty as equal: "no ids" either way.
var cmpIDs = cmpopts.EquateEmpty()

// diffIDs is cmp.Diff for sorted id lists, with a fast path for the
// common equal case: cmp's reflection would otherwise dominate the
// oracle test's run time under -race.
func diffIDs(want, got []uint64) string {
	if slices.Equal(want, got) {
		return ""
	}
	return cmp.Diff(want, got, cmpIDs)
}

// checkInvariants verifies the Grid's internal bookkeeping against the
// oracle: every slot points at its own member, every member sits in the
// cell its position maps to, and positions match.
func checkInvariants(t testing.TB, g *Grid, o *oracle) {
	t.Helper()
	if g.Len() != len(o.pos) {
		t.Fatalf("Len() = %d, oracle has %d", g.Len(), len(o.pos))
	}
	n := 0
	for c, ms := range g.cells {
		for i, m := range ms {
			n++
			if got := g.cellAt(m.x, m.y); got != c {
				t.Fatalf("id %d at (%v, %v) is in cell %d, belongs in %d", m.id, m.x, m.y, c, got)
			}
			if s := g.slots[m.id]; s != (slot{int32(c), int32(i)}) {
				t.Fatalf("id %d: slot %+v, member found at cell %d index %d", m.id, s, c, i)
			}
			if p, ok := o.pos[m.id]; !ok || p != [2]float64{m.x, m.y} {
				t.Fatalf("id %d at (%v, %v); oracle has %v (present %v)", m.id, m.x, m.y, p, ok)
			}
		}
	}
	if n != len(g.slots) {
		t.Fatalf("cells hold %d members, slots has %d", n, len(g.slots))
	}
}

// world drives a Grid and an oracle with the same random operations, biased
// toward the places bugs hide: cell edges, map edges, the exact radius.
type world struct {
	t    *testing.T
	rng  *rand.Rand
	cfg  Config
	g    *Grid
	o    *oracle
	ids  uint64 // ids are drawn from [0, ids) so that collisions happen
	scr1 []uint64
	scr2 []uint64
	rim  int // queries that found an entity exactly on the radius
}

func (w *world) coord(limit float64) float64 {
	cs := w.cfg.CellSize
	edges := int(limit / cs)
	switch w.rng.IntN(12) {
	case 0:
		return 0
	case 1:
		return math.Nextafter(limit, 0) // the last position inside the map
	case 2:
		return float64(w.rng.IntN(edges+1)) * cs // on a cell edge
	case 3:
		return math.Nextafter(float64(w.rng.IntN(edges+1))*cs, 0) // just before one
	case 4:
		return float64(w.rng.IntN(int(limit))) // integral, for exact distances
	case 5: // outside the map, or not a number
		return []float64{-1, -math.SmallestNonzeroFloat64, limit, limit + 7, math.NaN(), math.Inf(1), math.Inf(-1)}[w.rng.IntN(7)]
	default:
		return w.rng.Float64() * limit
	}
}

// centre may lie off the map: queries must clamp.
func (w *world) centre(limit float64) float64 {
	if w.rng.IntN(8) == 0 {
		return -50 + w.rng.Float64()*(limit+100)
	}
	return w.coord(limit)
}

func (w *world) radius() float64 {
	cs := w.cfg.CellSize
	switch w.rng.IntN(14) {
	case 0:
		return 0
	case 1:
		return 5
	case 2:
		return cs
	case 3:
		return cs / 3
	case 4:
		return 3 * cs
	case 5:
		return 2 * max(w.cfg.Width, w.cfg.Height)
	case 6:
		return math.Inf(1)
	case 7:
		return -1
	case 8:
		return math.NaN()
	case 9:
		return 1e200 // r*r overflows
	default:
		return w.rng.Float64() * 120
	}
}

func (w *world) id() uint64 { return w.rng.Uint64N(w.ids) }

// exactCircle picks a circle with some entity exactly on its rim, at
// dx, dy = ±3k, ±4k from the centre and r = 5k, so all three are exact.
func (w *world) exactCircle() (x, y, r float64, ok bool) {
	if len(w.o.pos) == 0 {
		return 0, 0, 0, false
	}
	p := w.o.pos[w.id()]
	if p == ([2]float64{}) {
		return 0, 0, 0, false
	}
	k := []float64{0.25, 1, 2, 10}[w.rng.IntN(4)]
	sx, sy := float64(1-2*w.rng.IntN(2)), float64(1-2*w.rng.IntN(2))
	return p[0] + sx*3*k, p[1] + sy*4*k, 5 * k, true
}

func (w *world) step() {
	t := w.t
	switch op := w.rng.IntN(20); {
	case op < 5:
		id, x, y := w.id(), w.coord(w.cfg.Width), w.coord(w.cfg.Height)
		want := w.o.insert(id, x, y)
		if err := w.g.Insert(id, x, y); !errors.Is(err, want) || (err == nil) != (want == nil) {
			t.Fatalf("Insert(%d, %v, %v) = %v, want %v", id, x, y, err, want)
		}
	case op < 10:
		id, x, y := w.id(), w.coord(w.cfg.Width), w.coord(w.cfg.Height)
		if w.rng.IntN(2) == 0 { // a short step usually stays in its cell
			if p, ok := w.o.pos[id]; ok {
				x, y = p[0]+w.rng.Float64()-0.5, p[1]+w.rng.Float64()-0.5
			}
		}
		want := w.o.move(id, x, y)
		if err := w.g.Move(id, x, y); !errors.Is(err, want) || (err == nil) != (want == nil) {
			t.Fatalf("Move(%d, %v, %v) = %v, want %v", id, x, y, err, want)
		}
	case op < 12:
		id := w.id()
		if got, want := w.g.Remove(id), w.o.remove(id); got != want {
			t.Fatalf("Remove(%d) = %v, want %v", id, got, want)
		}
	case op < 16:
		x, y, r := w.centre(w.cfg.Width), w.centre(w.cfg.Height), w.radius()
		if op == 15 {
			var ok bool
			if x, y, r, ok = w.exactCircle(); !ok {
				return
			}
		}
		w.checkCircle(x, y, r)
	case op < 18:
		x0, x1 := w.centre(w.cfg.Width), w.centre(w.cfg.Width)
		y0, y1 := w.centre(w.cfg.Height), w.centre(w.cfg.Height)
		switch w.rng.IntN(4) {
		case 0: // usually ordered; sometimes inverted, which is empty
			x0, x1 = min(x0, x1), max(x0, x1)
			y0, y1 = min(y0, y1), max(y0, y1)
		case 1: // a single point, which the inclusive bounds must catch
			if p, ok := w.o.pos[w.id()]; ok {
				x0, x1, y0, y1 = p[0], p[0], p[1], p[1]
			}
		case 2:
			x0, y0, x1, y1 = math.Inf(-1), math.Inf(-1), math.Inf(1), math.Inf(1)
		}
		want := w.o.rect(x0, y0, x1, y1)
		var got []uint64
		w.g.QueryRect(x0, y0, x1, y1, func(id uint64) bool { got = append(got, id); return true })
		if diff := diffIDs(want, sorted(got)); diff != "" {
			t.Fatalf("QueryRect(%v, %v, %v, %v) (-want +got):\n%s", x0, y0, x1, y1, diff)
		}
		if diff := diffIDs(want, sorted(w.g.AppendRect(nil, x0, y0, x1, y1))); diff != "" {
			t.Fatalf("AppendRect(%v, %v, %v, %v) (-want +got):\n%s", x0, y0, x1, y1, diff)
		}
	default:
		w.checkDiff()
	}
}

func (w *world) checkCircle(x, y, r float64) {
	t := w.t
	want := w.o.circle(x, y, r)
	var got []uint64
	w.g.QueryCircle(x, y, r, func(id uint64) bool { got = append(got, id); return true })
	if diff := diffIDs(want, sorted(got)); diff != "" {
		t.Fatalf("QueryCircle(%v, %v, %v) (-want +got):\n%s", x, y, r, diff)
	}
	for _, id := range want {
		p := w.o.pos[id]
		if dx, dy := p[0]-x, p[1]-y; float64(dx*dx)+float64(dy*dy) == r*r && r > 0 {
			w.rim++
			break
		}
	}
	w.scr1 = w.g.AppendCircle(w.scr1[:0], x, y, r)
	if diff := diffIDs(want, sorted(w.scr1)); diff != "" {
		t.Fatalf("AppendCircle(%v, %v, %v) (-want +got):\n%s", x, y, r, diff)
	}
	// Stopping early yields exactly as many ids as asked for, all genuine.
	limit := 1 + w.rng.IntN(3)
	var early []uint64
	w.g.QueryCircle(x, y, r, func(id uint64) bool { early = append(early, id); return len(early) < limit })
	if len(early) != min(limit, len(want)) {
		t.Fatalf("QueryCircle(%v, %v, %v) stopping after %d: got %d ids, want %d", x, y, r, limit, len(early), min(limit, len(want)))
	}
	for _, id := range early {
		if _, ok := slices.BinarySearch(want, id); !ok {
			t.Fatalf("QueryCircle(%v, %v, %v) stopping early reported %d, which is not within r", x, y, r, id)
		}
	}
}

func (w *world) checkDiff() {
	t := w.t
	r := w.radius()
	if math.IsInf(r, 0) || r > 1e6 {
		r = 5 // an unbounded radius sees everyone, so nothing ever changes
	}
	id, x, y := w.id(), w.coord(w.cfg.Width), w.coord(w.cfg.Height)
	switch w.rng.IntN(3) {
	case 0:
		want := w.o.circle(x, y, r, id)
		wantErr := w.o.insert(id, x, y)
		if wantErr != nil {
			want = nil
		}
		got, err := w.g.InsertDiff(id, x, y, r, w.scr1[:0])
		if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
			t.Fatalf("InsertDiff(%d, %v, %v, %v) error = %v, want %v", id, x, y, r, err, wantErr)
		}
		if diff := diffIDs(want, sorted(got)); diff != "" {
			t.Fatalf("InsertDiff(%d, %v, %v, %v) entered (-want +got):\n%s", id, x, y, r, diff)
		}
	case 1:
		var want []uint64
		if p, ok := w.o.pos[id]; ok {
			want = w.o.circle(p[0], p[1], r, id)
		}
		wantOK := w.o.remove(id)
		got, ok := w.g.RemoveDiff(id, r, w.scr1[:0])
		if ok != wantOK {
			t.Fatalf("RemoveDiff(%d, %v) = %v, want %v", id, r, ok, wantOK)
		}
		if diff := diffIDs(want, sorted(got)); diff != "" {
			t.Fatalf("RemoveDiff(%d, %v) left (-want +got):\n%s", id, r, diff)
		}
	default:
		if p, ok := w.o.pos[id]; ok && w.rng.IntN(2) == 0 {
			// Cross the rim of an exact circle: someone is exactly 5 away.
			x, y = p[0]+w.rng.Float64()*2*r-r, p[1]+w.rng.Float64()*2*r-r
		}
		var wantEntered, wantLeft []uint64
		if _, ok := w.o.pos[id]; ok {
			wantEntered, wantLeft = w.o.moveDiff(id, x, y, r)
		}
		wantErr := w.o.move(id, x, y)
		if wantErr != nil {
			wantEntered, wantLeft = nil, nil
		}
		entered, left, err := w.g.MoveDiff(id, x, y, r, w.scr1[:0], w.scr2[:0])
		if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
			t.Fatalf("MoveDiff(%d, %v, %v, %v) error = %v, want %v", id, x, y, r, err, wantErr)
		}
		if diff := diffIDs(wantEntered, sorted(entered)); diff != "" {
			t.Fatalf("MoveDiff(%d, %v, %v, %v) entered (-want +got):\n%s", id, x, y, r, diff)
		}
		if diff := diffIDs(wantLeft, sorted(left)); diff != "" {
			t.Fatalf("MoveDiff(%d, %v, %v, %v) left (-want +got):\n%s", id, x, y, r, diff)
		}
		w.scr1, w.scr2 = entered, left
	}
}

// TestGridMatchesOracle runs random worlds against the brute-force oracle.
// Cell sizes range from far below the typical radius (many cells per query)
// to beyond the map (one cell), and include sizes that do not divide the map,
// so the last column and row are partial.
func TestGridMatchesOracle(t *testing.T) {
	const width, height = 300, 200
	steps := 2000
	if testing.Short() {
		steps = 500
	}
	for _, cs := range []float64{0.75, 4, 7, 25, 64, 100, 1000} {
		for seed := uint64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("cell=%v/seed=%d", cs, seed), func(t *testing.T) {
				cfg := Config{Width: width, Height: height, CellSize: cs}
				g, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				w := &world{
					t:   t,
					rng: rand.New(rand.NewPCG(seed, uint64(cs*100))),
					cfg: cfg,
					g:   g,
					o:   newOracle(width, height),
					ids: 150,
				}
				for i := range steps {
					w.step()
					if i%500 == 0 {
						checkInvariants(t, g, w.o)
					}
				}
				checkInvariants(t, g, w.o)
				if w.rim == 0 {
					t.Errorf("no query found an entity exactly on its radius: the generator has gone vacuous")
				}
				t.Logf("%d queries with an entity exactly on the radius", w.rim)
				for id, p := range w.o.pos {
					if x, y, ok := g.Position(id); !ok || x != p[0] || y != p[1] {
						t.Fatalf("Position(%d) = %v, %v, %v; want %v, true", id, x, y, ok, p)
					}
				}
			})
		}
	}
}
