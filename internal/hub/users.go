package hub

import (
	"context"

	"github.com/heraldgg/herald/internal/session"
)

// UserSessions returns the local sessions of user, asking each shard in turn on
// its worker, which owns the user index. It is for control-plane calls (a game
// service subscribing a user's sessions to a topic), not for the hot path.
func (h *Hub) UserSessions(ctx context.Context, user string) ([]*session.Session, error) {
	var out []*session.Session
	for _, sh := range h.shards {
		var part []*session.Session
		err := sh.call(ctx, func(sh *shard) error {
			part = append(part, sh.users[user]...)
			return nil
		})
		if err != nil {
			// part is not read: the worker may still be writing it.
			return nil, err
		}
		out = append(out, part...)
	}
	return out, nil
}
