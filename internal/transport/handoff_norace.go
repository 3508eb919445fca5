//go:build !race

package transport

import "github.com/lesismal/nbio/nbhttp"

// raceHandoff exists only in -race builds; see handoff_race.go.
func raceHandoff(*nbhttp.Engine) (release func()) { return func() {} }
