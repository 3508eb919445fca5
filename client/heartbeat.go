package client

import (
	"time"

	"github.com/heraldgg/herald/protocol"
)

// The heartbeat is one timer per connection rather than a goroutine, so that an
// idle client costs no parked stack. It fires when the next thing is due: a ping
// one interval after the last frame sent, or the verdict 1.5 intervals after the
// last frame received. Any frame counts both ways, so a busy connection never pings.

func (cn *conn) startHeartbeat() {
	if cn.hb <= 0 {
		return
	}
	cn.hbMu.Lock()
	defer cn.hbMu.Unlock()
	if !cn.hbStopped {
		cn.hbTimer = time.AfterFunc(cn.hb, cn.heartbeat)
	}
}

// stopHeartbeat waits for a running tick to end, so that none outlives the conn.
func (cn *conn) stopHeartbeat() {
	cn.hbMu.Lock()
	defer cn.hbMu.Unlock()
	cn.hbStopped = true
	if cn.hbTimer != nil {
		cn.hbTimer.Stop()
	}
}

func (cn *conn) heartbeat() {
	cn.hbMu.Lock()
	defer cn.hbMu.Unlock()
	if cn.hbStopped {
		return
	}
	hb := int64(cn.hb)
	dead := hb * 3 / 2
	now := cn.now()
	if n := cn.recvd.Load(); n != cn.recvSeen {
		cn.recvSeen, cn.recvAt = n, now
	}
	if now-cn.recvAt >= dead {
		cn.fail(ErrHeartbeatTimeout)
		return
	}
	nextPing := cn.lastSent.Load() + hb
	if now-cn.lastSent.Load() >= hb {
		select {
		case cn.wlock <- struct{}{}:
			// The pong's id matches no call, so the reader drops it; having
			// arrived is all it is for.
			err := cn.writeLocked(&frame{op: protocol.Op_OP_PING, id: cn.c.nextID.Add(1)})
			<-cn.wlock
			if err != nil {
				return // the write failed the connection
			}
			now = cn.now()
			nextPing = now + hb
		default:
			// A write is under way and will count as traffic; look again soon
			// rather than queue a ping behind it.
			nextPing = now + hb/10
		}
	}
	// A frame's arrival is known only to the first tick after it, so while
	// frames come the tick runs every quarter of the verdict's delay: a server
	// that falls silent is declared dead at most that much late, never early.
	next := min(nextPing, cn.recvAt+dead, now+dead/4) - now
	cn.hbTimer.Reset(time.Duration(max(next, int64(time.Millisecond))))
}
