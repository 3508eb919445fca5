package hub

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldgg/herald/internal/hub/aoi"
)

// Errors about maps, positions and areas, returned to the gateway and the API.
var (
	ErrNoMap       = errors.New("hub: no such map")
	ErrOutOfBounds = errors.New("hub: position outside the map")
	ErrBadArea     = errors.New("hub: bad area")
)

// MapConfig describes one map sessions can stand on.
type MapConfig struct {
	// Width is the map's extent along x, in world units: positions have
	// 0 <= x < width. Required.
	Width float64 `koanf:"width"`
	// Height is the map's extent along y, in world units: positions have
	// 0 <= y < height. Required.
	Height float64 `koanf:"height"`
	// CellSize is the side of the spatial index's square cells, in world units.
	// A query costs in proportion to the cells it touches, so near the radius of
	// the commonest region broadcast is best; the map may have at most 4,194,304
	// cells. Default: interest_radius.
	CellSize float64 `koanf:"cell_size"`
	// ClientMove lets clients place themselves on this map with the move op.
	// Default false: only the server API places sessions here.
	ClientMove bool `koanf:"client_move"`
	// Interest sends each session enter and leave events as other sessions come
	// within or go beyond interest_radius of it, and every move to the sessions
	// that see the mover. Default false.
	Interest bool `koanf:"interest"`
	// InterestRadius is the area-of-interest radius, in world units. Default 100.
	InterestRadius float64 `koanf:"interest_radius"`
	// Conflate makes the position updates of interest latest-state: a newer update
	// of an entity replaces an older one still waiting for a client, and a client
	// too slow for them loses its oldest updates instead of its connection.
	// Default false.
	Conflate bool `koanf:"conflate"`
	// FlushDelay, on a conflated map, is how long position updates and interest
	// events may wait in a session's queue for company before they are written:
	// one write then carries all that arrived meanwhile (each newest per entity),
	// and anything else queued for the session (an answer, a topic message)
	// takes them along at once. At 10 moves a second in a crowd, a client gets
	// dozens of updates a second at different moments, and a write each is most
	// of the node's work; 20–50ms, a game's tick, cuts that several times.
	// Default 0s: written at once.
	FlushDelay time.Duration `koanf:"flush_delay"`
}

// DefaultMaps is the map table of a node whose config declares none: "demo",
// 1000 × 1000, open to clients' moves, with interest events and conflation.
func DefaultMaps() map[string]MapConfig {
	return map[string]MapConfig{"demo": {Width: 1000, Height: 1000, ClientMove: true,
		Interest: true, InterestRadius: 100, Conflate: true}}
}

// WithDefaults fills zero fields.
func (c MapConfig) WithDefaults() MapConfig {
	if c.InterestRadius <= 0 {
		c.InterestRadius = 100
	}
	if c.CellSize <= 0 {
		c.CellSize = c.InterestRadius
	}
	return c
}

// Validate reports a map that cannot work.
func (c MapConfig) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"width", c.Width}, {"height", c.Height}, {"cell_size", c.CellSize}, {"interest_radius", c.InterestRadius}} {
		if !(f.v > 0) || math.IsInf(f.v, 1) {
			return fmt.Errorf("%s: %v is not a positive finite number", f.name, f.v)
		}
	}
	if c.FlushDelay < 0 || c.FlushDelay > time.Second {
		return fmt.Errorf("flush_delay: %s is not between 0s and 1s", c.FlushDelay)
	}
	if _, err := aoi.New(c.grid()); err != nil {
		return fmt.Errorf("cell_size: %w", err)
	}
	return nil
}

func (c MapConfig) grid() aoi.Config {
	return aoi.Config{Width: c.Width, Height: c.Height, CellSize: c.CellSize}
}

// Contains reports whether (x, y) is on the map. NaN and infinities are not.
func (c MapConfig) Contains(x, y float64) bool {
	return x >= 0 && x < c.Width && y >= 0 && y < c.Height
}

// Validate reports a setting that cannot work, naming the field by its key path
// below hub.
func (c Config) Validate() error {
	var errs []error
	names := make([]string, 0, len(c.Maps))
	for name := range c.Maps {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkMapName(name); err != nil {
			errs = append(errs, fmt.Errorf("maps.%s: %w", name, err))
			continue
		}
		if err := c.Maps[name].WithDefaults().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("maps.%s.%w", name, err))
		}
	}
	return errors.Join(errs...)
}

func checkMapName(name string) error {
	if name == "" || len(name) > 256 || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("a map name must be 1 to 256 bytes of UTF-8 without spaces or control characters")
	}
	return nil
}

// Area is where a region message goes: a circle of Radius around (X, Y), or
// when Rect is set the rectangle MinX <= x <= MaxX, MinY <= y <= MaxY, which
// need not contain (X, Y). Bounds are inclusive, so a session exactly on the
// edge is inside. Receivers see Map, X and Y.
type Area struct {
	Map    string
	X, Y   float64
	Radius float64

	Rect                   bool
	MinX, MinY, MaxX, MaxY float64
}

// MapConfig returns the configuration of the map named name.
func (h *Hub) MapConfig(name string) (MapConfig, bool) {
	m, ok := h.maps[name]
	if !ok {
		return MapConfig{}, false
	}
	return m.cfg, true
}

// CheckPosition reports ErrNoMap for an unknown map and ErrOutOfBounds for a
// position off it (NaN and infinities included).
func (h *Hub) CheckPosition(mapName string, x, y float64) error {
	m, ok := h.maps[mapName]
	if !ok {
		return ErrNoMap
	}
	if !m.cfg.Contains(x, y) {
		return ErrOutOfBounds
	}
	return nil
}

// CheckArea reports ErrNoMap for an unknown map and wraps ErrBadArea for an
// area no session can be in: a coordinate that is not finite, a radius that
// is not positive, a rectangle whose minimum passes its maximum. The origin
// need not lie on the map.
func (h *Hub) CheckArea(a Area) error {
	if _, ok := h.maps[a.Map]; !ok {
		return ErrNoMap
	}
	if !finite(a.X) || !finite(a.Y) {
		return fmt.Errorf("%w: x and y must be finite numbers", ErrBadArea)
	}
	if a.Rect {
		if !finite(a.MinX) || !finite(a.MinY) || !finite(a.MaxX) || !finite(a.MaxY) {
			return fmt.Errorf("%w: rectangle bounds must be finite numbers", ErrBadArea)
		}
		if a.MinX > a.MaxX || a.MinY > a.MaxY {
			return fmt.Errorf("%w: rectangle minimum passes its maximum", ErrBadArea)
		}
		return nil
	}
	if !(a.Radius > 0) || math.IsInf(a.Radius, 1) {
		return fmt.Errorf("%w: radius %v is not a positive finite number", ErrBadArea, a.Radius)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
