package aoi

import (
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newGrid returns a Grid for cfg or fails the test.
func newGrid(t testing.TB, cfg Config) *Grid {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return g
}

// mustInsert inserts each id at its position or fails the test.
func mustInsert(t testing.TB, g *Grid, pos map[uint64][2]float64) {
	t.Helper()
	for id, p := range pos {
		if err := g.Insert(id, p[0], p[1]); err != nil {
			t.Fatalf("Insert(%d, %v, %v): %v", id, p[0], p[1], err)
		}
	}
}

func circleIDs(g *Grid, x, y, r float64) []uint64 {
	return sorted(g.AppendCircle(nil, x, y, r))
}

func TestNew(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"valid", Config{Width: 100, Height: 50, CellSize: 10}, true},
		{"cell not dividing map", Config{Width: 100, Height: 50, CellSize: 7}, true},
		{"cell larger than map", Config{Width: 100, Height: 50, CellSize: 1000}, true},
		{"exactly MaxCells", Config{Width: 2048, Height: 2048, CellSize: 1}, true},
		{"zero value", Config{}, false},
		{"zero width", Config{Width: 0, Height: 50, CellSize: 10}, false},
		{"negative height", Config{Width: 100, Height: -50, CellSize: 10}, false},
		{"zero cell", Config{Width: 100, Height: 50, CellSize: 0}, false},
		{"negative cell", Config{Width: 100, Height: 50, CellSize: -1}, false},
		{"NaN width", Config{Width: nan, Height: 50, CellSize: 10}, false},
		{"infinite height", Config{Width: 100, Height: inf, CellSize: 10}, false},
		{"NaN cell", Config{Width: 100, Height: 50, CellSize: nan}, false},
		{"infinite cell", Config{Width: 100, Height: 50, CellSize: inf}, false},
		{"too many cells", Config{Width: 2049, Height: 2048, CellSize: 1}, false},
		{"cell count overflows int", Config{Width: 1e300, Height: 1e300, CellSize: 1e-300}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(tt.cfg)
			if tt.ok {
				if err != nil {
					t.Fatalf("New(%+v) = %v, want success", tt.cfg, err)
				}
				if g.Len() != 0 {
					t.Errorf("new grid has Len %d", g.Len())
				}
				return
			}
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("New(%+v) = %v, want ErrBadConfig", tt.cfg, err)
			}
			if g != nil {
				t.Errorf("New(%+v) returned a grid with its error", tt.cfg)
			}
		})
	}
}

func TestInsertMoveErrors(t *testing.T) {
	const w, h = 100, 50
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		x, y float64
		want error // for both a fresh Insert and a Move of a present id
	}{
		{"origin", 0, 0, nil},
		{"just inside far corner", math.Nextafter(w, 0), math.Nextafter(h, 0), nil},
		{"negative zero", math.Copysign(0, -1), 0, nil},
		{"x at width", w, 10, ErrOutOfBounds},
		{"y at height", 10, h, ErrOutOfBounds},
		{"negative x", -0.001, 10, ErrOutOfBounds},
		{"negative y", 10, -math.SmallestNonzeroFloat64, ErrOutOfBounds},
		{"NaN x", nan, 10, ErrOutOfBounds},
		{"NaN y", 10, nan, ErrOutOfBounds},
		{"+Inf x", inf, 10, ErrOutOfBounds},
		{"-Inf y", 10, -inf, ErrOutOfBounds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGrid(t, Config{Width: w, Height: h, CellSize: 10})
			if err := g.Insert(1, tt.x, tt.y); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Insert = %v, want %v", err, tt.want)
			}
			wantLen := 0
			if tt.want == nil {
				wantLen = 1
			}
			if g.Len() != wantLen {
				t.Fatalf("Len = %d after Insert, want %d", g.Len(), wantLen)
			}

			mustInsert(t, g, map[uint64][2]float64{2: {5, 5}})
			if err := g.Move(2, tt.x, tt.y); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Move = %v, want %v", err, tt.want)
			}
			wantX, wantY := 5.0, 5.0
			if tt.want == nil {
				wantX, wantY = tt.x, tt.y
			}
			// Compared as bits so that a -0 stored as +0 shows up.
			if x, y, _ := g.Position(2); math.Float64bits(x) != math.Float64bits(wantX) || math.Float64bits(y) != math.Float64bits(wantY) {
				t.Fatalf("after Move, Position = (%v, %v), want (%v, %v)", x, y, wantX, wantY)
			}
		})
	}
}

func TestIdentityErrors(t *testing.T) {
	g := newGrid(t, Config{Width: 100, Height: 100, CellSize: 10})
	mustInsert(t, g, map[uint64][2]float64{7: {1, 2}})

	if err := g.Insert(7, 50, 50); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate Insert = %v, want ErrExists", err)
	}
	if x, y, _ := g.Position(7); x != 1 || y != 2 {
		t.Errorf("duplicate Insert moved the entity to (%v, %v)", x, y)
	}
	if err := g.Move(8, 50, 50); !errors.Is(err, ErrNotFound) {
		t.Errorf("Move of unknown id = %v, want ErrNotFound", err)
	}
	if _, _, err := g.MoveDiff(8, 50, 50, 10, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("MoveDiff of unknown id = %v, want ErrNotFound", err)
	}
	if _, _, err := g.MoveDiff(7, -1, 50, 10, nil, nil); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("MoveDiff out of bounds = %v, want ErrOutOfBounds", err)
	}
	if _, err := g.InsertDiff(7, 3, 3, 10, nil); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate InsertDiff = %v, want ErrExists", err)
	}
	if _, err := g.InsertDiff(9, math.NaN(), 3, 10, nil); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("InsertDiff at NaN = %v, want ErrOutOfBounds", err)
	}
	if _, ok := g.RemoveDiff(8, 10, nil); ok {
		t.Errorf("RemoveDiff of unknown id reported true")
	}
	if g.Remove(8) {
		t.Errorf("Remove of unknown id reported true")
	}
	if !g.Remove(7) || g.Remove(7) {
		t.Errorf("Remove twice: want true then false")
	}
	if _, _, ok := g.Position(7); ok || g.Len() != 0 {
		t.Errorf("removed id still present: Position ok=%v, Len=%d", ok, g.Len())
	}
	if err := g.Insert(7, 99, 99); err != nil {
		t.Errorf("re-Insert after Remove: %v", err)
	}
}

// TestQueryCircle pins the boundary rules with hand-picked cases; the oracle
// test covers the rest at random.
func TestQueryCircle(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	pos := map[uint64][2]float64{
		1: {10, 10},
		2: {0, 0},
		3: {math.Nextafter(100, 0), math.Nextafter(100, 0)},
		4: {20, 20}, // on a cell corner
		5: {20, 35},
	}
	tests := []struct {
		name    string
		x, y, r float64
		want    []uint64
	}{
		{"exactly on the radius", 13, 14, 5, []uint64{1}},
		{"exactly on the radius, other quadrant", 7, 6, 5, []uint64{1}},
		{"just short of the radius", 13, 14, math.Nextafter(5, 0), nil},
		{"zero radius on an entity", 10, 10, 0, []uint64{1}},
		{"zero radius beside an entity", 10, math.Nextafter(10, 0), 0, nil},
		{"rim on a cell corner", 23, 24, 5, []uint64{4}},
		{"rim across a cell edge", 20, 30, 5, []uint64{5}},
		{"map origin", 3, 4, 5, []uint64{2}},
		{"centre off the map", -3, -4, 5, []uint64{2}},
		{"centre far off the map", -1000, 50, 1021, []uint64{1, 2, 4, 5}},
		{"far corner", 100, 100, 0.01, []uint64{3}},
		{"everything", 50, 50, 1e9, []uint64{1, 2, 3, 4, 5}},
		{"infinite radius", 50, 50, inf, []uint64{1, 2, 3, 4, 5}},
		{"radius squared overflows", 50, 50, 1e300, []uint64{1, 2, 3, 4, 5}},
		{"negative radius", 10, 10, -1, nil},
		{"negative zero radius", 10, 10, math.Copysign(0, -1), []uint64{1}},
		{"NaN radius", 10, 10, nan, nil},
		{"NaN centre", nan, 10, 5, nil},
		{"infinite centre", inf, 10, inf, nil},
	}
	g := newGrid(t, Config{Width: 100, Height: 100, CellSize: 10})
	mustInsert(t, g, pos)
	o := newOracle(100, 100)
	o.pos = pos
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, o.circle(tt.x, tt.y, tt.r), cmpIDs); diff != "" {
				t.Fatalf("oracle disagrees with the table (-table +oracle):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, circleIDs(g, tt.x, tt.y, tt.r), cmpIDs); diff != "" {
				t.Errorf("AppendCircle(%v, %v, %v) (-want +got):\n%s", tt.x, tt.y, tt.r, diff)
			}
		})
	}
}

func TestQueryRect(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	pos := map[uint64][2]float64{
		1: {10, 10},
		2: {0, 0},
		3: {math.Nextafter(100, 0), 50},
		4: {20, 20},
	}
	tests := []struct {
		name                   string
		minX, minY, maxX, maxY float64
		want                   []uint64
	}{
		{"inclusive min", 10, 10, 15, 15, []uint64{1}},
		{"inclusive max", 5, 5, 10, 10, []uint64{1}},
		{"single point", 20, 20, 20, 20, []uint64{4}},
		{"just missing", math.Nextafter(10, 11), 0, 19, 100, nil},
		{"beyond every edge", -50, -50, 150, 150, []uint64{1, 2, 3, 4}},
		{"infinite", -inf, -inf, inf, inf, []uint64{1, 2, 3, 4}},
		{"far edge", 99, 0, 100, 100, []uint64{3}},
		{"off the map", 200, 200, 300, 300, nil},
		{"inverted x", 15, 0, 5, 100, nil},
		{"inverted y", 0, 15, 100, 5, nil},
		{"NaN bound", 0, 0, nan, 100, nil},
	}
	g := newGrid(t, Config{Width: 100, Height: 100, CellSize: 10})
	mustInsert(t, g, pos)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			g.QueryRect(tt.minX, tt.minY, tt.maxX, tt.maxY, func(id uint64) bool {
				got = append(got, id)
				return true
			})
			if diff := cmp.Diff(tt.want, sorted(got), cmpIDs); diff != "" {
				t.Errorf("QueryRect(%v, %v, %v, %v) (-want +got):\n%s", tt.minX, tt.minY, tt.maxX, tt.maxY, diff)
			}
		})
	}
}

// TestSwapRemove moves and removes entities in the middle of a crowded cell,
// where a stale slot after a swap-remove would surface.
func TestSwapRemove(t *testing.T) {
	g := newGrid(t, Config{Width: 100, Height: 100, CellSize: 50})
	for id := range uint64(10) {
		if err := g.Insert(id, float64(id), float64(id)); err != nil {
			t.Fatal(err)
		}
	}
	if !g.Remove(3) {
		t.Fatal("Remove(3) = false")
	}
	if err := g.Move(5, 75, 75); err != nil { // to another cell
		t.Fatal(err)
	}
	if err := g.Move(0, 0.5, 0.5); err != nil { // within the cell
		t.Fatal(err)
	}
	want := map[uint64][2]float64{0: {0.5, 0.5}, 1: {1, 1}, 2: {2, 2}, 4: {4, 4}, 5: {75, 75}, 6: {6, 6}, 7: {7, 7}, 8: {8, 8}, 9: {9, 9}}
	o := newOracle(100, 100)
	o.pos = want
	checkInvariants(t, g, o)
}

// TestCircleBoxRounding pins the reason circleSpan pads its box: the entity
// sits one ulp below a cell edge and exactly on the rim as the predicate
// rounds it, while centre-r rounds up onto the edge. Without the padding the
// scan would start one column (or row) too far and miss it.
func TestCircleBoxRounding(t *testing.T) {
	tests := []struct {
		name   string
		p, c   float64 // entity and centre on the tested axis; 7 on the other
		r      float64
		alongY bool
	}{
		{"column", math.Nextafter(1, 0), 55.89674701088995, 54.89674701088995, false},
		{"another column", math.Nextafter(29, 0), 124.28386953651118, 95.28386953651118, false},
		{"row", math.Nextafter(1, 0), 55.89674701088995, 54.89674701088995, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px, py, cx, cy := tt.p, 7.0, tt.c, 7.0
			if tt.alongY {
				px, py, cx, cy = py, px, cy, cx
			}
			g := newGrid(t, Config{Width: 200, Height: 200, CellSize: 1})
			o := newOracle(200, 200)
			mustInsert(t, g, map[uint64][2]float64{1: {px, py}})
			o.pos[1] = [2]float64{px, py}
			want := o.circle(cx, cy, tt.r)
			if len(want) != 1 {
				t.Fatalf("the predicate no longer admits the entity; the case needs new numbers")
			}
			if diff := cmp.Diff(want, circleIDs(g, cx, cy, tt.r), cmpIDs); diff != "" {
				t.Errorf("AppendCircle(%v, %v, %v) (-want +got):\n%s", cx, cy, tt.r, diff)
			}
		})
	}
}

// TestCircleUnderflow pins the absolute part of circleSpan's padding: on a
// microscopic map, a distance of 1e-167 squares to 0, so the predicate admits
// the entity even at radius 0, ten cells away from the centre's.
func TestCircleUnderflow(t *testing.T) {
	g := newGrid(t, Config{Width: 1e-165, Height: 1e-165, CellSize: 1e-168})
	mustInsert(t, g, map[uint64][2]float64{1: {5e-166, 5e-166}})
	o := newOracle(1e-165, 1e-165)
	o.pos[1] = [2]float64{5e-166, 5e-166}
	x, y := 5e-166-1e-167, 5e-166+1e-167
	want := o.circle(x, y, 0)
	if len(want) != 1 {
		t.Fatalf("the predicate no longer admits the entity; the case needs new numbers")
	}
	if diff := cmp.Diff(want, circleIDs(g, x, y, 0), cmpIDs); diff != "" {
		t.Errorf("AppendCircle(%v, %v, 0) (-want +got):\n%s", x, y, diff)
	}
}
