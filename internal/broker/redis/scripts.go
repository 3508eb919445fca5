package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/heraldgg/herald/internal/broker"
)

// Every topic has two keys, sharing a hash tag so a script may touch both on
// Redis Cluster too:
//
//	<prefix>:{<topic>}:m  hash: o = last offset, e = epoch
//	<prefix>:{<topic>}:h  stream: one entry per retained publication, ID "<offset>-0",
//	                      fields d = data and, when set, u = user
//
// Both expire HistoryTTL after the last publish.

// positionLua is the prelude of both scripts. position returns the topic's
// offset and epoch, starting a new epoch when the topic has none (never
// published, expired, or Redis lost its data) or when its history vanished
// while its offset survived (an evicted stream): either way history may be
// gone, and a client holding a position in the old epoch must learn so.
const positionLua = `
local function position(meta, hist, fresh, ttl)
  local m = redis.call('HMGET', meta, 'o', 'e')
  local o, e = tonumber(m[1]), m[2]
  if e and o and (o == 0 or redis.call('EXISTS', hist) == 1) then
    return o, e
  end
  redis.call('DEL', hist)
  redis.call('HSET', meta, 'o', 0, 'e', fresh)
  redis.call('PEXPIRE', meta, ttl)
  return 0, fresh
end
`

// publishLua assigns the next offset, appends to history and publishes, all in
// one step, so no two publications share an offset and none is live without
// being in history.
//
// KEYS: meta, history. ARGV: fresh epoch, TTL (ms), history size, channel,
// data, user, deadline (Unix ms; 0 = none).
//
// The deadline keeps a publish that waited behind a stalled Redis from taking
// effect after its caller was told it failed.
const publishLua = positionLua + `
local deadline = tonumber(ARGV[7])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then
    return redis.error_reply('HERALDLATE publish reached Redis after its deadline')
  end
end
local _, e = position(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
local id = string.format('%d-0', o)
if ARGV[6] == '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id, 'd', ARGV[5])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id, 'd', ARGV[5], 'u', ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[4], string.format('%d:%s:%d:', o, e, #ARGV[6]) .. ARGV[6] .. ARGV[5])
return {o, e}
`

// readLua returns the topic's position and retained publications after a
// given one, atomically.
//
// KEYS: meta, history. ARGV: fresh epoch, TTL (ms), since epoch, since offset,
// count, "1" to read from the oldest entry when the epochs differ.
// Returns {offset, epoch, entries}.
const readLua = positionLua + `
local o, e = position(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local since = tonumber(ARGV[4])
local entries = {}
if ARGV[3] == e then
  if since < o then
    entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', since + 1), '+', 'COUNT', ARGV[5])
  end
elseif ARGV[6] == '1' then
  entries = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[5])
end
return {o, e, entries}
`

// script runs a Lua script by its SHA1, sending the source only when Redis
// does not know it (first use, or after a restart emptied its script cache).
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

func (s *script) evalsha(c rueidis.CoreClient, keys, args []string) rueidis.Completed {
	return c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

func (s *script) eval(c rueidis.CoreClient, keys, args []string) rueidis.Completed {
	return c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

func (s *script) run(ctx context.Context, c rueidis.CoreClient, keys, args []string) rueidis.RedisResult {
	resp := c.Do(ctx, s.evalsha(c, keys, args))
	if noScript(resp.Error()) {
		resp = c.Do(ctx, s.eval(c, keys, args))
	}
	return resp
}

// runRetryable is run for a script that may safely run twice: rueidis retries
// it on another connection when the first was dead, as every pooled connection
// is once after a Redis restart.
func (s *script) runRetryable(ctx context.Context, c rueidis.CoreClient, keys, args []string) rueidis.RedisResult {
	resp := c.Do(ctx, s.evalsha(c, keys, args).ToRetryable())
	if noScript(resp.Error()) {
		resp = c.Do(ctx, s.eval(c, keys, args).ToRetryable())
	}
	return resp
}

func noScript(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	return ok && rerr.IsNoScript()
}

// errLate is what a publish script refused because its deadline had passed.
var errLate = errors.New("redis: publish reached Redis after its deadline")

// decodePosition parses the publish script's reply.
func decodePosition(resp rueidis.RedisResult) (broker.Position, error) {
	vals, err := resp.ToArray()
	if err != nil {
		if rerr, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(rerr.Error(), "HERALDLATE") {
			return broker.Position{}, errLate
		}
		return broker.Position{}, err
	}
	if len(vals) != 2 {
		return broker.Position{}, fmt.Errorf("redis: publish script returned %d values", len(vals))
	}
	off, err := vals[0].AsUint64()
	if err != nil {
		return broker.Position{}, fmt.Errorf("redis: publish script offset: %w", err)
	}
	epoch, err := vals[1].ToString()
	if err != nil {
		return broker.Position{}, fmt.Errorf("redis: publish script epoch: %w", err)
	}
	return broker.Position{Offset: off, Epoch: epoch}, nil
}

// decodeRead parses the read script's reply for topic.
func decodeRead(topic string, resp rueidis.RedisResult) (broker.Position, []broker.Publication, error) {
	vals, err := resp.ToArray()
	if err != nil {
		return broker.Position{}, nil, err
	}
	if len(vals) != 3 {
		return broker.Position{}, nil, fmt.Errorf("redis: read script returned %d values", len(vals))
	}
	var pos broker.Position
	if pos.Offset, err = vals[0].AsUint64(); err != nil {
		return broker.Position{}, nil, fmt.Errorf("redis: read script offset: %w", err)
	}
	if pos.Epoch, err = vals[1].ToString(); err != nil {
		return broker.Position{}, nil, fmt.Errorf("redis: read script epoch: %w", err)
	}
	entries, err := vals[2].AsXRange()
	if err != nil {
		return broker.Position{}, nil, fmt.Errorf("redis: read script entries: %w", err)
	}
	var pubs []broker.Publication
	if len(entries) > 0 {
		pubs = make([]broker.Publication, 0, len(entries))
	}
	for _, e := range entries {
		ms, _, _ := strings.Cut(e.ID, "-")
		off, err := strconv.ParseUint(ms, 10, 64)
		if err != nil {
			return broker.Position{}, nil, fmt.Errorf("redis: history entry id %q: %w", e.ID, err)
		}
		pubs = append(pubs, broker.Publication{
			Topic:  topic,
			Offset: off,
			Epoch:  pos.Epoch,
			Data:   []byte(e.FieldValues["d"]),
			User:   e.FieldValues["u"],
		})
	}
	return pos, pubs, nil
}
