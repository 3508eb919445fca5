// Package aoi is the spatial index behind area-of-interest delivery: "every
// player within radius R of (x, y) on this map", and the enter and leave
// events that tell players who came into or went out of view.
//
// # Model
//
// A Grid covers one map, the half-open rectangle [0, Width) × [0, Height),
// cut into square cells of side CellSize; the last column and row may be cut
// short by the map's edge. Each entity, an id with a position, lives in the
// one cell its position falls in. Cells are a dense row-major table, each cell
// a slice of its members with their positions stored inline, so a query walks
// the cells under its bounding box and tests each member with the exact
// predicate without touching per-entity state. Each entity also remembers its
// slot (cell, index within the cell), which makes Move and Remove O(1): a move
// within a cell rewrites the position in place, and a move across cells is a
// swap-remove and an append. Cells keep their capacity when they empty, so
// after warm-up nothing allocates, and memory follows the peak crowding of
// each cell rather than the current one.
//
// The cost of a call therefore follows the cells it touches, not the
// entities on the map. CellSize should be near the radius of the commonest
// query: much larger and a query tests members far outside its circle, much
// smaller and it walks many near-empty cells. On a 10,000 × 10,000 map at
// radius 100 (BenchmarkCellSize), cells of 100 were the fastest with 100,000
// entities and within 20% of the fastest (200) with 10,000; sparser maps
// favour larger cells, denser ones smaller.
//
// The table is dense rather than a map from cell to members because a query
// touches several cells and indexing a slice is far cheaper than hashing
// each: BenchmarkCellStore measured the same queries 3x slower from a map
// with cells of 100, and 5x slower with cells of 25. The price is 24 bytes
// per cell whether populated or not, which New bounds with MaxCells.
//
// # Exact answers
//
// QueryCircle reports exactly the ids whose position (px, py) satisfies
//
//	float64(dx*dx)+float64(dy*dy) <= r*r    where dx = px-x, dy = py-y
//
// The test is inclusive, so an entity exactly on the radius is found, and
// each product is rounded on its own, so the same entities are found on every
// CPU whether or not it fuses multiply-adds. The diff methods use the same
// test. QueryRect's
// bounds are inclusive too. A query reaching past the map is clamped to it;
// a NaN or infinite centre, a negative or NaN radius, or an inverted or NaN
// rectangle matches nothing. Results come in no particular order.
//
// # Interest
//
// InsertDiff, MoveDiff and RemoveDiff make a change and report whose view it
// changed. With one interest radius for everyone, visibility is symmetric:
// the ids that came within the mover's radius are exactly those whose radius
// the mover came within, so one call yields both directions of the events.
//
// # Concurrency
//
// A Grid has no locks and starts no goroutines. It belongs to the one hub
// goroutine that owns its map (the map's worker, see package hub), and every
// method, queries included, must be called from that goroutine; sharing it would put a lock on the hottest
// path, which is what the single-owner design avoids. Query callbacks run
// synchronously on the same goroutine and must not modify the Grid: a
// swap-remove during the scan would skip or repeat members. To react to a
// query by moving or removing entities, collect the ids with AppendCircle or
// AppendRect first.
package aoi
