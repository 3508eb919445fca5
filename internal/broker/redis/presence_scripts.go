package redis

// Presence keys, under Config.Prefix (shown as "herald"). A node's
// announcement is an incarnation id: 16 hex digits, fresh for every
// announcement that had to start over, then the node name. Registrations name
// the id, never the bare node, so those of a dead or superseded incarnation
// can be told apart for ever, however soon the node comes back.
//
//	herald:{cluster}:alive   zset: id → expiry, Unix ms by Redis's clock (0 once
//	                         left or superseded); an id at or below now is dead
//	herald:{cluster}:info    hash: id → NodeInfo as JSON
//	herald:{cluster}:cur     hash: node → its latest id
//	herald:u:{<user>}        set: ids of the nodes holding user
//	herald:{<topic>}:p       set: "<len(id)>:<id><user>" for each user present in
//	                         topic (next to the topic's history keys)
//	herald:n:{<id>}:u        set: users registered by id
//	herald:n:{<id>}:t        set: "<len(topic)>:<topic><user>" registered by id
//
// The n: sets exist so a dead id's registrations can be found and removed
// without scanning the keyspace. Each hash tag keeps one user's, one topic's
// or one node's keys together; the scripts below span tags and, like the
// rest of this broker, need a standalone Redis (or Sentinel), not Cluster.

// nowLua reads Redis's clock, so expiry never depends on a node's.
const nowLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live(alive, id)
  local s = redis.call('ZSCORE', alive, id)
  return s and tonumber(s) > now
end
`

// announceLua refreshes or claims an announcement.
//
// KEYS: alive, info, cur. ARGV: id, node, ttl (ms), info JSON, "1" to claim.
// A refresh (not a claim) of an id that is not live returns 0 and changes
// nothing: a dead id never comes back, so its registrations stay dead. A
// claim makes id the node's current one and kills the one it replaces.
const announceLua = nowLua + `
local id = ARGV[1]
if ARGV[5] == '1' then
  local old = redis.call('HGET', KEYS[3], ARGV[2])
  if old and old ~= id and redis.call('ZSCORE', KEYS[1], old) then
    redis.call('ZADD', KEYS[1], 0, old)
  end
  redis.call('HSET', KEYS[3], ARGV[2], id)
elseif not live(KEYS[1], id) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
redis.call('HSET', KEYS[2], id, ARGV[4])
return 1
`

// leaveLua ends an announcement: the id is dead from now on.
//
// KEYS: alive, cur. ARGV: id, node.
const leaveLua = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
`

// updateLua applies a batch of one node's changes, atomically and only while
// the node's id is live: a write for a dead id would never be reaped.
//
// KEYS: alive, the id's user index, the id's topic index, then one key per
// change (the user's set or the topic's presence set). ARGV: id, then three
// per change: op (a = user added, r = removed, j = topic joined, l = left),
// user, topic.
const updateLua = nowLua + `
local id = ARGV[1]
if not live(KEYS[1], id) then
  return redis.error_reply('HERALDLAPSED node announcement is not live')
end
local idm = string.len(id) .. ':' .. id
for i = 1, (#ARGV - 1) / 3 do
  local op, user, topic, k = ARGV[3*i-1], ARGV[3*i], ARGV[3*i+1], KEYS[3+i]
  if op == 'a' then
    redis.call('SADD', KEYS[2], user)
    redis.call('SADD', k, id)
  elseif op == 'r' then
    redis.call('SREM', k, id)
    redis.call('SREM', KEYS[2], user)
  elseif op == 'j' then
    redis.call('SADD', KEYS[3], string.len(topic) .. ':' .. topic .. user)
    redis.call('SADD', k, idm .. user)
  else
    redis.call('SREM', k, idm .. user)
    redis.call('SREM', KEYS[3], string.len(topic) .. ':' .. topic .. user)
  end
end
return 1
`

// userNodesLua returns the live ids holding a user and drops the dead ones,
// which can never come back.
//
// KEYS: alive, the user's set.
const userNodesLua = nowLua + `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if live(KEYS[1], id) then
    out[#out+1] = id
  else
    redis.call('SREM', KEYS[2], id)
  end
end
return out
`

// topicUsersLua returns a topic's presence members whose id is live and drops
// the others.
//
// KEYS: alive, the topic's presence set.
const topicUsersLua = nowLua + `
local seen, out = {}, {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local i = string.find(m, ':', 1, true)
  local ok = false
  if i then
    local id = string.sub(m, i + 1, i + tonumber(string.sub(m, 1, i - 1)))
    ok = seen[id]
    if ok == nil then
      ok = live(KEYS[1], id)
      seen[id] = ok
    end
  end
  if ok then
    out[#out+1] = m
  else
    redis.call('SREM', KEYS[2], m)
  end
end
return out
`

// nodesLua returns the live ids and their announcements.
//
// KEYS: alive, info. Returns {ids, infos}.
const nodesLua = nowLua + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
if #ids == 0 then
  return {{}, {}}
end
return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}
`

// deadLua lists dead ids, for reaping.
//
// KEYS: alive. ARGV: how many at most.
const deadLua = nowLua + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
`

// forgetLua drops a dead id once its indexes are empty, that is once the
// reaper removed every registration it had.
//
// KEYS: alive, info, cur, the id's user index, the id's topic index.
// ARGV: id, node. Returns 1 when the id was forgotten.
const forgetLua = nowLua + `
if live(KEYS[1], ARGV[1]) or redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[5]) == 1 then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[3], ARGV[2])
end
return 1
`
