package aoi

import "math"

// span is an inclusive block of cells: columns c0..c1, rows r0..r1.
type span struct{ c0, r0, c1, r1 int }

// noSpan contains no cell.
var noSpan = span{c0: 0, r0: 0, c1: -1, r1: -1}

// Slack added around a circle's bounding box, relative to the magnitudes
// involved and absolute. The box is computed in rounded arithmetic while the
// membership test is exact, so without slack a member the test admits, a few
// ulps past x-r, could sit in a column the box leaves out. The absolute term
// covers radii whose square underflows: below 2^-511 a squared distance loses
// its precision (or becomes 0) and admits points up to about 2^-510 away. The
// extra cells this can add are touched only when the box edge lies within
// 2^-40 of a cell edge.
const (
	slackRel = 0x1p-40
	slackAbs = 0x1p-500
)

func (g *Grid) rectSpan(minX, minY, maxX, maxY float64) span {
	return span{c0: g.col(minX), r0: g.row(minY), c1: g.col(maxX), r1: g.row(maxY)}
}

// circleSpan bounds the cells that can hold a member within r2 (a squared
// radius) of (x, y), for a finite centre. It works from sqrt(r2) rather than
// the caller's r because r*r may overflow to +Inf, after which the test
// admits every member however far.
func (g *Grid) circleSpan(x, y, r2 float64) span {
	h := math.Sqrt(r2)
	px := h + (math.Abs(x)+h)*slackRel + slackAbs
	py := h + (math.Abs(y)+h)*slackRel + slackAbs
	return g.rectSpan(x-px, y-py, x+px, y+py)
}

// within is the single distance test behind every circle query and diff, so
// that they all agree on the boundary. The conversions forbid fusing the
// expression into a multiply-add, which the spec permits and arm64 does: a
// fused result rounds differently and would make "exactly on the radius"
// depend on the CPU.
func within(dx, dy, r2 float64) bool {
	return float64(dx*dx)+float64(dy*dy) <= r2
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// circle validates a circle query and returns the cells to scan and the
// squared radius to test against.
func (g *Grid) circle(x, y, r float64) (s span, r2 float64, ok bool) {
	if !finite(x) || !finite(y) || !(r >= 0) {
		return noSpan, 0, false
	}
	r2 = r * r
	return g.circleSpan(x, y, r2), r2, true
}

// QueryCircle calls fn for every id within r of (x, y), inclusive, in no
// particular order, until fn returns false. The test is exactly
// float64(dx*dx)+float64(dy*dy) <= r*r, so an entity at distance exactly r
// is reported. A negative or NaN r, or a NaN or infinite centre, matches
// nothing; a circle reaching past the map is clamped to it. fn must not
// modify g (see the package doc).
func (g *Grid) QueryCircle(x, y, r float64, fn func(id uint64) bool) {
	s, r2, ok := g.circle(x, y, r)
	if !ok {
		return
	}
	for row := s.r0; row <= s.r1; row++ {
		base := row * g.cols
		for _, ms := range g.cells[base+s.c0 : base+s.c1+1] {
			for _, m := range ms {
				if within(m.x-x, m.y-y, r2) && !fn(m.id) {
					return
				}
			}
		}
	}
}

// AppendCircle appends to dst the ids QueryCircle would report and returns
// the extended slice. It allocates only when dst runs out of capacity.
func (g *Grid) AppendCircle(dst []uint64, x, y, r float64) []uint64 {
	s, r2, ok := g.circle(x, y, r)
	if !ok {
		return dst
	}
	for row := s.r0; row <= s.r1; row++ {
		base := row * g.cols
		for _, ms := range g.cells[base+s.c0 : base+s.c1+1] {
			for _, m := range ms {
				if within(m.x-x, m.y-y, r2) {
					dst = append(dst, m.id)
				}
			}
		}
	}
	return dst
}

// rect validates a rectangle query. The comparisons are written so that a
// NaN bound fails them.
func (g *Grid) rect(minX, minY, maxX, maxY float64) (span, bool) {
	if !(minX <= maxX && minY <= maxY) {
		return noSpan, false
	}
	return g.rectSpan(minX, minY, maxX, maxY), true
}

// QueryRect calls fn for every id with minX <= x <= maxX and
// minY <= y <= maxY, in no particular order, until fn returns false. A
// rectangle with a NaN bound or with min > max matches nothing; one reaching
// past the map (infinite bounds included) is clamped to it. fn must not
// modify g.
func (g *Grid) QueryRect(minX, minY, maxX, maxY float64, fn func(id uint64) bool) {
	s, ok := g.rect(minX, minY, maxX, maxY)
	if !ok {
		return
	}
	for row := s.r0; row <= s.r1; row++ {
		base := row * g.cols
		for _, ms := range g.cells[base+s.c0 : base+s.c1+1] {
			for _, m := range ms {
				if m.x >= minX && m.x <= maxX && m.y >= minY && m.y <= maxY && !fn(m.id) {
					return
				}
			}
		}
	}
}

// AppendRect appends to dst the ids QueryRect would report and returns the
// extended slice. It allocates only when dst runs out of capacity.
func (g *Grid) AppendRect(dst []uint64, minX, minY, maxX, maxY float64) []uint64 {
	s, ok := g.rect(minX, minY, maxX, maxY)
	if !ok {
		return dst
	}
	for row := s.r0; row <= s.r1; row++ {
		base := row * g.cols
		for _, ms := range g.cells[base+s.c0 : base+s.c1+1] {
			for _, m := range ms {
				if m.x >= minX && m.x <= maxX && m.y >= minY && m.y <= maxY {
					dst = append(dst, m.id)
				}
			}
		}
	}
	return dst
}
