package session

import (
	"time"
)

// Outcome of an Enqueue.
type Outcome uint8

const (
	Queued       Outcome = iota
	Conflated            // replaced an older frame of the same entity
	DroppedOld           // lossy: older frames were dropped to make room
	DroppedNew           // lossy: no room even after dropping; this frame was dropped
	SlowConsumer         // the bound was passed: the caller must disconnect the session
	Gone                 // the session is closed
)

// Enqueue appends f to the out queue, applying the slow-consumer policy at once:
// it never blocks and never lets one client's backlog grow past MaxQueueBytes.
// Shard worker only.
func (s *Session) Enqueue(f *Frame) Outcome {
	if s.closed.Load() {
		return Gone
	}
	n := len(f.Wire(s.Variant))
	if f.Entity != "" && !f.Fence {
		for i := len(s.queue) - 1; i >= 0; i-- {
			if old := s.queue[i]; old.Entity == f.Entity {
				if old.Fence {
					break
				}
				s.queued += n - len(old.Wire(s.Variant))
				s.queue[i] = f
				s.Dirty = true
				return Conflated
			}
		}
	}
	limit := s.cfg.MaxQueueBytes
	backlog := s.Conn.Buffered()
	outcome := Queued
	if s.queued+backlog+n > limit {
		if !f.Lossy {
			return SlowConsumer
		}
		// Drop the oldest lossy frames until the new one fits.
		kept := s.queue[:0]
		for _, old := range s.queue {
			if old.Lossy && s.queued+backlog+n > limit {
				s.queued -= len(old.Wire(s.Variant))
				continue
			}
			kept = append(kept, old)
		}
		clear(s.queue[len(kept):])
		s.queue = kept
		if s.queued+backlog+n > limit {
			return DroppedNew
		}
		outcome = DroppedOld
	}
	s.queue = append(s.queue, f)
	s.queued += n
	s.Dirty = true
	return outcome
}

// Queued reports the bytes waiting in the queue. Shard worker only.
func (s *Session) Queued() int { return s.queued }

// Flush writes everything queued as one contiguous buffer, built in scratch (which
// it returns for reuse) — unless the socket still has a backlog. A backlog means the
// kernel's buffer is full, so the frames wait for the drain, where they can still be
// conflated or dropped instead of piling up behind it. Shard worker only.
func (s *Session) Flush(scratch []byte) ([]byte, error) {
	s.Dirty = false
	if len(s.queue) == 0 || s.closed.Load() {
		return scratch, nil
	}
	if s.Conn.Backlogged() {
		return scratch, nil
	}
	return s.write(scratch)
}

// FlushNow writes everything queued even behind a backlog, for a session about to
// be closed gracefully: what it was sent before the close still reaches it.
func (s *Session) FlushNow(scratch []byte) ([]byte, error) {
	s.Dirty = false
	if len(s.queue) == 0 {
		return scratch, nil
	}
	return s.write(scratch)
}

func (s *Session) write(scratch []byte) ([]byte, error) {
	buf := scratch[:0]
	for _, f := range s.queue {
		buf = append(buf, f.Wire(s.Variant)...)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	s.queued = 0
	if cap(s.queue) > 1024 {
		s.queue = nil // a burst passed; give the memory back
	}
	err := s.Conn.Write(buf)
	if cap(buf) > 1<<20 {
		buf = nil
	}
	return buf, err
}

// Stuck reports whether the socket backlog has not drained for WriteTimeout.
func (s *Session) Stuck(now time.Time) bool {
	if s.Conn.Buffered() == 0 {
		s.lastDrain.Store(now.UnixNano())
		return false
	}
	return now.Sub(time.Unix(0, s.lastDrain.Load())) > s.cfg.WriteTimeout
}

// Discard drops the queue, for a session being closed. Shard worker only.
func (s *Session) Discard() {
	clear(s.queue)
	s.queue = nil
	s.queued = 0
	for _, sub := range s.Subs {
		sub.Pending = nil
	}
}
