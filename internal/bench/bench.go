package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// Run performs one benchmark run against the node at cfg.URL and cfg.Admin and
// returns what it measured. It stops by itself after cfg.Warmup plus
// cfg.Duration (and the time to open connections and drain deliveries); when ctx
// ends first it stops early and reports what it had, with a note saying so. An
// error means nothing could be measured: a bad config, or an admin API that does
// not answer.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Report{
		Mode: s.Mode, URL: s.URL, Transport: s.Transport, Codec: s.Codec.String(), Admin: s.Admin,
		Warmup: s.Warmup.Seconds(),
		Conns:  ConnReport{Requested: s.Conns, SourceAddrs: addrStrings(s.sources)},
	}
	limit, err := raiseFileLimit()
	r.Conns.FileLimit = limit
	switch {
	case err != nil:
		log.Warn("bench: cannot raise the open-files limit", "limit", limit, "err", err)
	case limit > 0 && uint64(s.Conns)+64 > limit:
		r.note("the open-files limit (%d) is below the %d connections asked for plus a margin: expect failures to open", limit, s.Conns)
		log.Warn("bench: open-files limit too low", "limit", limit, "conns", s.Conns)
	}
	a := newAdmin(s.Admin, s.APIKey, maxPublishers)
	defer a.close()
	if _, err := a.stats(ctx); err != nil {
		return nil, fmt.Errorf("%w (the bench reads the node's figures from its admin API: set --admin)", err)
	}
	switch s.Mode {
	case ModeIdle:
		err = runIdle(ctx, &s, a, log, r)
	case ModeFanout:
		err = runFanout(ctx, &s, a, log, r)
	case ModeRequest:
		err = runRequest(ctx, &s, a, log, r)
	}
	if ctx.Err() != nil {
		r.note("interrupted before the end: figures cover only the part measured")
	}
	if r.Conns.Opened < r.Conns.Requested {
		r.note("only %d of %d connections opened: per-connection figures use the %d", r.Conns.Opened, r.Conns.Requested, r.Conns.Opened)
	}
	if r.Machine.Cores > 0 && r.Machine.OtherCores > 0.25 {
		r.note("%.2f cores were busy with other work during the measurement: the figures are not clean, run again", r.Machine.OtherCores)
	}
	return r, err
}

func (r *Report) note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

// recordFleet copies the fleet's counts into the report.
func (r *Report) recordFleet(f *fleet) {
	r.Conns.Opened, r.Conns.Failed = f.opened, f.failed
	r.Conns.FailReasons = f.fails.snapshot()
	r.Conns.Dropped = f.dropped.Load()
	r.Conns.DropReasons = f.drops.snapshot()
}

// sample is the CPU clocks and node stats at one instant.
type sample struct {
	at      time.Time
	stats   ServerStats
	self    time.Duration
	busy    uint64 // machine clock ticks busy in processes
	irq     uint64 // machine clock ticks in interrupts
	total   uint64 // machine clock ticks
	procOK  bool
	statsOK bool
}

func takeSample(ctx context.Context, a *admin, log *slog.Logger) sample {
	sm := sample{at: time.Now(), self: selfCPU()}
	sm.busy, sm.irq, sm.total, sm.procOK = machineTicks()
	st, err := a.stats(ctx)
	if err != nil {
		log.Warn("bench: node stats unavailable", "err", err)
	}
	sm.stats, sm.statsOK = st, err == nil
	return sm
}

// window fills the report's CPU figures for the span between two samples.
func (r *Report) window(from, to sample) {
	secs := to.at.Sub(from.at).Seconds()
	if secs <= 0 {
		return
	}
	r.Duration = secs
	r.Server.Node = to.stats.Node
	r.Server.Before, r.Server.After = from.stats, to.stats
	if from.statsOK && to.statsOK {
		r.Server.CPUCores = (to.stats.CPUSeconds - from.stats.CPUSeconds) / secs
	}
	r.Load.CPUCores = (to.self - from.self).Seconds() / secs
	if from.procOK && to.procOK && to.total > from.total {
		n := runtime.NumCPU()
		r.Machine.Cores = n
		ticks := float64(to.total - from.total)
		r.Machine.IRQCores = float64(to.irq-from.irq) / ticks * float64(n)
		r.Machine.BusyCores = float64(to.busy-from.busy)/ticks*float64(n) + r.Machine.IRQCores
		r.Machine.OtherCores = max(0, r.Machine.BusyCores-r.Machine.IRQCores-r.Server.CPUCores-r.Load.CPUCores)
	}
}

// machineTicks reads the machine's CPU clock ticks from the first line of
// /proc/stat: busy in processes (user, nice, system), in interrupts (irq,
// softirq: loopback traffic is processed there, outside any process's time), and
// in all; ok is false where there is none.
func machineTicks() (busy, irq, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	fields := bytes.Fields(line)
	if len(fields) < 8 || string(fields[0]) != "cpu" {
		return 0, 0, 0, false
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		switch i {
		case 0, 1, 2, 7: // user, nice, system, steal
			busy += v
		case 5, 6: // irq, softirq
			irq += v
		}
		if i < 8 { // guest time is already counted in user
			total += v
		}
	}
	return busy, irq, total, true
}

// sleep waits d or until ctx ends, and reports whether it waited the whole d.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startCPUProfile, when profiles are asked for, starts the node's CPU profile
// over the measured part, and the load generator's own (bench-cpu.pprof): on one
// machine the generator's cost per delivery bounds what the node can show. It
// returns a function that ends the generator's profile and waits for the node's.
func startCPUProfile(ctx context.Context, s *settings, a *admin, log *slog.Logger) func() {
	if s.ProfileDir == "" {
		return func() {}
	}
	secs := max(1, int(s.Duration/time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.profile(ctx, s.ProfileDir, "cpu.pprof", "profile", secs); err != nil {
			log.Warn("bench: no CPU profile", "err", err)
		}
	}()
	self, err := startSelfProfile(s.ProfileDir)
	if err != nil {
		log.Warn("bench: no CPU profile of the load generator", "err", err)
	}
	return func() {
		if self != nil {
			pprof.StopCPUProfile()
			if err := self.Close(); err != nil {
				log.Warn("bench: load generator profile", "err", err)
			}
		}
		<-done
	}
}

func startSelfProfile(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "bench-cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func saveProfiles(ctx context.Context, s *settings, a *admin, log *slog.Logger) {
	if s.ProfileDir == "" {
		return
	}
	for _, kind := range []string{"heap", "goroutine"} {
		if err := a.profile(ctx, s.ProfileDir, kind+".pprof", kind, 0); err != nil {
			log.Warn("bench: no profile", "kind", kind, "err", err)
		}
	}
	log.Info("bench: node profiles saved", "dir", s.ProfileDir)
}
