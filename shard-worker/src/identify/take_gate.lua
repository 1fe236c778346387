-- Take the Identify gate of one bucket and spend one session start, atomically.
-- Protocol: docs/redis-protocol.md. All keys share the hash tag {<app_id>}.
--
-- KEYS[1] P:epoch            marker with no TTL; its value is its creation time (ms)
-- KEYS[2] P:gate:<bucket>    the gate
-- KEYS[3] P:budget           remaining session starts (expires at Discord's reset_after)
-- KEYS[4] P:queue:<bucket>   waiting line: ZSET member=shard id, score=shard id
-- KEYS[5] P:seen:<bucket>    HASH shard id -> last time (ms) that waiter asked
-- ARGV[1] owner              unique per attempt
-- ARGV[2] connect_bound_ms   first TTL of the gate (>= hold_ms)
-- ARGV[3] hold_ms            window + margin
-- ARGV[4] reserve            never spend the budget below this
-- ARGV[5] shard id
-- ARGV[6] stale_ms           a waiter silent this long has left the line
--
-- Returns {code, n}:
--   {0, remaining}  granted; remaining = budget left after this Identify
--   {1, pttl}       the gate is held; ask again after pttl
--   {2, ms}         the epoch marker was missing (Redis lost data): nothing granted for ms
--   {3, pttl}       the budget is at the reserve; it resets in pttl
--   {4, 0}          the budget is unknown: set it from GET /gateway/bot, then ask again
--   {5, pttl}       a lower shard id of this bucket is waiting; it goes first

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[3])

-- Join (or refresh our place in) the waiting line, drop waiters that went silent.
local shard = ARGV[5]
redis.call('ZADD', KEYS[4], tonumber(shard), shard)
redis.call('HSET', KEYS[5], shard, now)
local stale = tonumber(ARGV[6])
local head = nil
while true do
  local first = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if not first then break end
  local seen = tonumber(redis.call('HGET', KEYS[5], first) or '0')
  if now - seen > stale then
    redis.call('ZREM', KEYS[4], first)
    redis.call('HDEL', KEYS[5], first)
  else
    head = first
    break
  end
end
redis.call('PEXPIRE', KEYS[4], stale)
redis.call('PEXPIRE', KEYS[5], stale)

-- Waiters are in line first, so that the order holds after an epoch hold too.
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], now)
  return {2, hold}
end
local since = now - tonumber(epoch)
if since < hold then
  return {2, hold - since}
end

local pttl = redis.call('PTTL', KEYS[2])
if pttl == -1 then
  -- A gate without a TTL is not ours to judge: treat it as held for one window.
  pttl = hold
end
if head ~= shard then
  return {5, math.max(pttl, 0)}
end
if pttl > 0 then
  return {1, pttl}
end

local budget = redis.call('GET', KEYS[3])
if not budget then
  return {4, 0}
end
budget = tonumber(budget)
if budget <= tonumber(ARGV[4]) then
  return {3, redis.call('PTTL', KEYS[3])}
end

redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DECR', KEYS[3])
redis.call('ZREM', KEYS[4], shard)
redis.call('HDEL', KEYS[5], shard)
return {0, budget - 1}
