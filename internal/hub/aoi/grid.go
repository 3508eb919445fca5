package aoi

import (
	"errors"
	"fmt"
	"math"
)

// MaxCells caps the number of cells a Grid may have. The cell table is
// allocated whole by New at 24 bytes a cell, so the cap bounds a grid's fixed
// cost at 96 MiB whatever its population; a map that needs more cells wants a
// larger CellSize.
const MaxCells = 1 << 22

// Errors returned by this package. Insert, Move and the diff methods return
// them bare rather than wrapped: the caller already holds the id and the
// position, and those calls sit on the hot path where a wrapped error would
// allocate per rejected client update.
var (
	ErrBadConfig   = errors.New("aoi: bad config")
	ErrOutOfBounds = errors.New("aoi: position out of bounds")
	ErrExists      = errors.New("aoi: id already in grid")
	ErrNotFound    = errors.New("aoi: id not in grid")
)

// Config describes one map. Every field is required: a map's size is the
// game's own, so there is no default to fall back on.
type Config struct {
	// Width is the map's extent along x, in world units. Positions satisfy
	// 0 <= x < Width. Must be positive and finite.
	Width float64
	// Height is the map's extent along y, in world units. Positions satisfy
	// 0 <= y < Height. Must be positive and finite.
	Height float64
	// CellSize is the side of a square cell, in world units. Must be positive
	// and finite, and leave at most MaxCells cells. Near the radius of the
	// commonest query is best (the package doc gives the figures).
	CellSize float64
}

func (c Config) validate() error {
	for _, f := range [...]struct {
		name string
		v    float64
	}{{"Width", c.Width}, {"Height", c.Height}, {"CellSize", c.CellSize}} {
		if !(f.v > 0) || math.IsInf(f.v, 1) {
			return fmt.Errorf("%w: %s is %v, want a positive finite number", ErrBadConfig, f.name, f.v)
		}
	}
	// Counted in float64 because a tiny CellSize overflows int.
	if n := math.Ceil(c.Width/c.CellSize) * math.Ceil(c.Height/c.CellSize); n > MaxCells {
		return fmt.Errorf("%w: CellSize %v makes %.0f cells on a %v×%v map, more than MaxCells (%d)",
			ErrBadConfig, c.CellSize, n, c.Width, c.Height, MaxCells)
	}
	return nil
}

// Grid is a uniform-grid spatial index over one map. It is not safe for
// concurrent use: see the package doc for who owns it.
type Grid struct {
	// Immutable after New.
	width, height float64
	cellSize      float64
	cols, rows    int

	// Owned by the goroutine that owns the Grid.
	cells [][]member      // row-major: cell (col, row) is cells[row*cols+col]
	slots map[uint64]slot // where each id's member sits
}

// member is an entity as its cell stores it. The position lives here rather
// than in a per-entity table so that a query reads each cell as one
// contiguous run instead of chasing an id into a map for every candidate.
type member struct {
	id   uint64
	x, y float64
}

// slot locates an entity's member, so Move and Remove reach it without
// scanning its cell. int32 halves the map value next to int; MaxCells keeps
// cell in range, and a cell would need 2^31 members (48 GiB) to overflow idx.
type slot struct {
	cell int32
	idx  int32
}

// New returns an empty Grid for the map cfg describes. Errors wrap
// ErrBadConfig.
func New(cfg Config) (*Grid, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// max guards a Width/CellSize quotient that underflows to zero.
	cols := max(1, int(math.Ceil(cfg.Width/cfg.CellSize)))
	rows := max(1, int(math.Ceil(cfg.Height/cfg.CellSize)))
	return &Grid{
		width:    cfg.Width,
		height:   cfg.Height,
		cellSize: cfg.CellSize,
		cols:     cols,
		rows:     rows,
		cells:    make([][]member, cols*rows),
		slots:    make(map[uint64]slot),
	}, nil
}

// Len reports how many entities the grid holds.
func (g *Grid) Len() int { return len(g.slots) }

// Position reports where id is, and whether it is in the grid at all.
func (g *Grid) Position(id uint64) (x, y float64, ok bool) {
	s, ok := g.slots[id]
	if !ok {
		return 0, 0, false
	}
	m := g.cells[s.cell][s.idx]
	return m.x, m.y, true
}

// Insert adds id at (x, y). It returns ErrOutOfBounds for a position outside
// the map (NaN and ±Inf included) and ErrExists for an id already present; in
// both cases the grid is unchanged.
func (g *Grid) Insert(id uint64, x, y float64) error {
	if err := g.checkInsert(id, x, y); err != nil {
		return err
	}
	g.attach(id, x, y, g.cellAt(x, y))
	return nil
}

func (g *Grid) checkInsert(id uint64, x, y float64) error {
	if !g.contains(x, y) {
		return ErrOutOfBounds
	}
	if _, ok := g.slots[id]; ok {
		return ErrExists
	}
	return nil
}

// Move puts id at (x, y). It returns ErrOutOfBounds for a position outside
// the map and ErrNotFound for an unknown id; in both cases the grid is
// unchanged. A move that stays in its cell costs one map lookup.
func (g *Grid) Move(id uint64, x, y float64) error {
	if !g.contains(x, y) {
		return ErrOutOfBounds
	}
	s, ok := g.slots[id]
	if !ok {
		return ErrNotFound
	}
	g.relocate(id, s, x, y)
	return nil
}

// Remove takes id out of the grid and reports whether it was there.
func (g *Grid) Remove(id uint64) bool {
	s, ok := g.slots[id]
	if !ok {
		return false
	}
	g.detach(s)
	delete(g.slots, id)
	return true
}

// contains is written so that NaN fails every comparison and ±Inf fails one.
func (g *Grid) contains(x, y float64) bool {
	return x >= 0 && x < g.width && y >= 0 && y < g.height
}

func (g *Grid) cellAt(x, y float64) int {
	return g.row(y)*g.cols + g.col(x)
}

// col maps x to its column, clamping to the map so that queries reaching past
// an edge need no special case. The mapping is monotonic (division by a
// positive constant is, under any rounding), which is what lets a query
// bound its columns by col(minX) and col(maxX) and miss no member. Clamping
// happens in float64 because converting an out-of-range float to int is
// implementation-defined.
func (g *Grid) col(x float64) int { return index(x/g.cellSize, g.cols) }

func (g *Grid) row(y float64) int { return index(y/g.cellSize, g.rows) }

func index(q float64, n int) int {
	switch {
	case !(q > 0): // also NaN, though callers never pass one
		return 0
	case q >= float64(n-1):
		return n - 1
	default:
		return int(q) // truncation is floor for q > 0
	}
}

func (g *Grid) attach(id uint64, x, y float64, c int) {
	g.cells[c] = append(g.cells[c], member{id: id, x: x, y: y})
	g.slots[id] = slot{cell: int32(c), idx: int32(len(g.cells[c]) - 1)}
}

// detach swap-removes s's member from its cell, which is O(1) at the price
// of reordering the cell; nothing depends on the order. The cell keeps its
// capacity so that the next arrival does not allocate.
func (g *Grid) detach(s slot) {
	ms := g.cells[s.cell]
	last := len(ms) - 1
	if int(s.idx) != last {
		moved := ms[last]
		ms[s.idx] = moved
		g.slots[moved.id] = s
	}
	g.cells[s.cell] = ms[:last]
}

// relocate moves a known id to an in-bounds position.
func (g *Grid) relocate(id uint64, s slot, x, y float64) {
	c := g.cellAt(x, y)
	if c == int(s.cell) {
		m := &g.cells[c][s.idx]
		m.x, m.y = x, y
		return
	}
	g.detach(s)
	g.attach(id, x, y, c)
}
