package aoi

import (
	"errors"
	"math"
	"testing"
)

// Fuzz map: small, so that a few bytes reach every cell and every edge.
const fuzzW, fuzzH = 50, 40

// fuzzCellSizes spans cells far smaller than the usual radius, sizes that do
// not divide the map, and one cell for the whole map.
var fuzzCellSizes = [...]float64{0.5, 1, 3, 5, 7.5, 16, 100}

// fuzzCoord maps a byte to a coordinate on a quarter-unit lattice a little
// wider than the map, so that cell edges, map edges and exact 3-4-5
// distances come up often, with the top values kept for the special cases.
func fuzzCoord(b byte, limit float64) float64 {
	switch b {
	case 255:
		return math.NaN()
	case 254:
		return math.Inf(1)
	case 253:
		return math.Inf(-1)
	case 252:
		return math.Nextafter(limit, 0)
	case 251:
		return limit
	case 250:
		return math.Nextafter(0, -1)
	}
	return float64(int(b)-8) / 4 // -2 to 58.5
}

func fuzzRadius(b byte) float64 {
	switch b {
	case 255:
		return math.NaN()
	case 254:
		return math.Inf(1)
	case 253:
		return -1
	case 252:
		return 1e300
	}
	return float64(b) / 4
}

// FuzzGrid reads the input as a cell size and then a sequence of operations,
// five bytes each: op, id, x, y, radius. Every result is checked against the
// oracle, and the grid's bookkeeping at the end.
func FuzzGrid(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{3, 0, 1, 20, 24, 0, 0, 2, 32, 40, 0, 3, 0, 20, 24, 20})
	f.Add([]byte{5, 0, 7, 252, 252, 0, 1, 7, 8, 8, 0, 3, 0, 8, 8, 255, 4, 7, 8, 8, 20})
	f.Add([]byte{1, 0, 1, 40, 40, 0, 0, 2, 52, 56, 0, 6, 1, 64, 64, 20, 7, 2, 20, 20, 20, 5, 2, 12, 12, 12})
	f.Add([]byte{6, 0, 1, 0, 0, 0, 0, 2, 251, 0, 0, 0, 3, 255, 0, 0, 1, 9, 0, 0, 0, 4, 0, 0, 0, 254})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		g, err := New(Config{Width: fuzzW, Height: fuzzH, CellSize: fuzzCellSizes[int(data[0])%len(fuzzCellSizes)]})
		if err != nil {
			t.Fatal(err)
		}
		o := newOracle(fuzzW, fuzzH)
		sameErr := func(got, want error) bool { return errors.Is(got, want) && (got == nil) == (want == nil) }
		var scratch1, scratch2 []uint64
		for ops := data[1:]; len(ops) >= 5; ops = ops[5:] {
			id := uint64(ops[1] % 16)
			x, y, r := fuzzCoord(ops[2], fuzzW), fuzzCoord(ops[3], fuzzH), fuzzRadius(ops[4])
			switch ops[0] % 9 {
			case 0:
				if err, want := g.Insert(id, x, y), o.insert(id, x, y); !sameErr(err, want) {
					t.Fatalf("Insert(%d, %v, %v) = %v, want %v", id, x, y, err, want)
				}
			case 1:
				if err, want := g.Move(id, x, y), o.move(id, x, y); !sameErr(err, want) {
					t.Fatalf("Move(%d, %v, %v) = %v, want %v", id, x, y, err, want)
				}
			case 2:
				if got, want := g.Remove(id), o.remove(id); got != want {
					t.Fatalf("Remove(%d) = %v, want %v", id, got, want)
				}
			case 3:
				want := o.circle(x, y, r)
				var got []uint64
				g.QueryCircle(x, y, r, func(id uint64) bool { got = append(got, id); return true })
				if diff := diffIDs(want, sorted(got)); diff != "" {
					t.Fatalf("QueryCircle(%v, %v, %v) (-want +got):\n%s", x, y, r, diff)
				}
			case 4:
				// The id byte doubles as the rectangle's extent, on the same lattice.
				x1, y1 := x+float64(ops[1])/4, y+float64(ops[4])/4
				want := o.rect(x, y, x1, y1)
				if diff := diffIDs(want, sorted(g.AppendRect(nil, x, y, x1, y1))); diff != "" {
					t.Fatalf("AppendRect(%v, %v, %v, %v) (-want +got):\n%s", x, y, x1, y1, diff)
				}
			case 5:
				var wantEntered, wantLeft []uint64
				if _, ok := o.pos[id]; ok {
					wantEntered, wantLeft = o.moveDiff(id, x, y, r)
				}
				wantErr := o.move(id, x, y)
				if wantErr != nil {
					wantEntered, wantLeft = nil, nil
				}
				entered, left, err := g.MoveDiff(id, x, y, r, scratch1[:0], scratch2[:0])
				if !sameErr(err, wantErr) {
					t.Fatalf("MoveDiff(%d, %v, %v, %v) = %v, want %v", id, x, y, r, err, wantErr)
				}
				if diff := diffIDs(wantEntered, sorted(entered)); diff != "" {
					t.Fatalf("MoveDiff(%d, %v, %v, %v) entered (-want +got):\n%s", id, x, y, r, diff)
				}
				if diff := diffIDs(wantLeft, sorted(left)); diff != "" {
					t.Fatalf("MoveDiff(%d, %v, %v, %v) left (-want +got):\n%s", id, x, y, r, diff)
				}
				scratch1, scratch2 = entered, left
			case 6:
				want := o.circle(x, y, r, id)
				wantErr := o.insert(id, x, y)
				if wantErr != nil {
					want = nil
				}
				got, err := g.InsertDiff(id, x, y, r, nil)
				if !sameErr(err, wantErr) {
					t.Fatalf("InsertDiff(%d, %v, %v, %v) = %v, want %v", id, x, y, r, err, wantErr)
				}
				if diff := diffIDs(want, sorted(got)); diff != "" {
					t.Fatalf("InsertDiff(%d, %v, %v, %v) entered (-want +got):\n%s", id, x, y, r, diff)
				}
			case 7:
				var want []uint64
				if p, ok := o.pos[id]; ok {
					want = o.circle(p[0], p[1], r, id)
				}
				wantOK := o.remove(id)
				got, ok := g.RemoveDiff(id, r, nil)
				if ok != wantOK {
					t.Fatalf("RemoveDiff(%d, %v) = %v, want %v", id, r, ok, wantOK)
				}
				if diff := diffIDs(want, sorted(got)); diff != "" {
					t.Fatalf("RemoveDiff(%d, %v) left (-want +got):\n%s", id, r, diff)
				}
			case 8:
				gx, gy, ok := g.Position(id)
				p, wantOK := o.pos[id]
				if ok != wantOK || (ok && (gx != p[0] || gy != p[1])) {
					t.Fatalf("Position(%d) = %v, %v, %v; want %v, %v", id, gx, gy, ok, p, wantOK)
				}
			}
		}
		checkInvariants(t, g, o)
	})
}
