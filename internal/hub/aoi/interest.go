package aoi

// InsertDiff inserts id at (x, y) like Insert and appends to entered every
// other id within radius of (x, y): everyone who now sees id, and everyone id
// now sees. A negative or NaN radius sees no one. On error the grid and
// entered are unchanged.
func (g *Grid) InsertDiff(id uint64, x, y, radius float64, entered []uint64) ([]uint64, error) {
	if err := g.checkInsert(id, x, y); err != nil {
		return entered, err
	}
	// Queried before attaching, so id cannot report itself.
	entered = g.AppendCircle(entered, x, y, radius)
	g.attach(id, x, y, g.cellAt(x, y))
	return entered, nil
}

// RemoveDiff removes id like Remove and appends to left every other id that
// was within radius of id's last position. It reports false, leaving left
// unchanged, when id was not in the grid.
func (g *Grid) RemoveDiff(id uint64, radius float64, left []uint64) ([]uint64, bool) {
	s, ok := g.slots[id]
	if !ok {
		return left, false
	}
	m := g.cells[s.cell][s.idx]
	g.detach(s)
	delete(g.slots, id)
	return g.AppendCircle(left, m.x, m.y, radius), true
}

// MoveDiff moves id like Move and appends the change in its area of interest:
// to entered, every other id within radius of the new position that was not
// within radius of the old one; to left, every other id within radius of the
// old position that is not within radius of the new one. With one radius for
// everyone, visibility is symmetric, so the same lists say who starts and
// stops seeing id. A negative or NaN radius sees no one: the move happens and
// nothing is appended. Errors are Move's, and leave the grid and both slices
// unchanged.
//
// The cost follows the cells the two circles cover; a cell under both is
// scanned once.
func (g *Grid) MoveDiff(id uint64, x, y, radius float64, entered, left []uint64) (enteredOut, leftOut []uint64, err error) {
	if !g.contains(x, y) {
		return entered, left, ErrOutOfBounds
	}
	s, ok := g.slots[id]
	if !ok {
		return entered, left, ErrNotFound
	}
	if radius >= 0 {
		old := g.cells[s.cell][s.idx]
		d := differ{
			g:  g,
			id: id,
			ox: old.x, oy: old.y,
			nx: x, ny: y,
			r2:      radius * radius,
			entered: entered,
			left:    left,
		}
		before := g.circleSpan(old.x, old.y, d.r2)
		d.scan(before, noSpan)
		d.scan(g.circleSpan(x, y, d.r2), before)
		entered, left = d.entered, d.left
	}
	g.relocate(id, s, x, y)
	return entered, left, nil
}

// differ accumulates one MoveDiff. It is computed before the move takes
// effect, which is safe because the only member that moves is id itself,
// and id is skipped.
type differ struct {
	g              *Grid
	id             uint64
	ox, oy, nx, ny float64
	r2             float64
	entered, left  []uint64
}

// scan visits the cells of s that are not in skip.
func (d *differ) scan(s, skip span) {
	cols := d.g.cols
	for row := s.r0; row <= s.r1; row++ {
		base := row * cols
		if row < skip.r0 || row > skip.r1 {
			d.cells(base+s.c0, base+s.c1)
			continue
		}
		// skip's columns split this row into at most two runs.
		d.cells(base+s.c0, base+min(s.c1, skip.c0-1))
		d.cells(base+max(s.c0, skip.c1+1), base+s.c1)
	}
}

// cells examines cells lo..hi inclusive, which may be an empty range.
func (d *differ) cells(lo, hi int) {
	if lo > hi {
		return
	}
	for _, ms := range d.g.cells[lo : hi+1] {
		for _, m := range ms {
			if m.id == d.id {
				continue
			}
			was := within(m.x-d.ox, m.y-d.oy, d.r2)
			is := within(m.x-d.nx, m.y-d.ny, d.r2)
			switch {
			case is && !was:
				d.entered = append(d.entered, m.id)
			case was && !is:
				d.left = append(d.left, m.id)
			}
		}
	}
}
