-- Take the Identify gate of one bucket and spend one session start, atomically.
-- Protocol: docs/redis-protocol.md. All keys share the hash tag {<app_id>}.
--
-- KEYS[1] P:epoch            marker with no TTL: '<run_id>:<ms>', the server's run_id and the
--                            marker's creation time
-- KEYS[2] P:gate:<bucket>    the gate
-- KEYS[3] P:budget           remaining session starts (expires at Discord's reset_after)
-- KEYS[4] P:queue:<bucket>   waiting line: ZSET member=shard id, score=shard id
-- KEYS[5] P:seen:<bucket>    HASH shard id -> last time (ms) that waiter asked
-- KEYS[6] P:max-concurrency  the max_concurrency (bucket map) of the last grant, for
--                            connect_bound after it
-- KEYS[7] P:budget-period    HASH: Discord's last word on the budget (remaining, resetAt) and
--                            the grants taken from this period (<gate key> = owner)
-- ARGV[1] owner              unique per attempt
-- ARGV[2] connect_bound_ms   first TTL of the gate (>= hold_ms), and the epoch hold
-- ARGV[3] hold_ms            window + margin
-- ARGV[4] reserve            never spend the budget below this
-- ARGV[5] shard id
-- ARGV[6] stale_ms           a waiter silent this long has left the line
-- ARGV[7] max_concurrency    the caller's bucket map (buckets are shard id % this)
--
-- Returns {code, n}:
--   {0, remaining}  granted; remaining = budget left after this Identify
--   {1, pttl}       the gate is held; ask again after pttl
--   {2, ms}         the epoch marker was missing or of another server process (Redis may have
--                   lost data): nothing granted for ms (connect_bound from the marker's creation)
--   {3, pttl}       the budget is at the reserve; it resets in pttl
--   {4, 0}          the budget is unknown (missing, without Discord's word, or above it): set it
--                   from GET /gateway/bot, then ask again
--   {5, pttl}       a lower shard id of this bucket is waiting; it goes first
--   {6, pttl}       gates were granted under another max_concurrency less than connect_bound
--                   ago: two bucket maps must never be live at once; ask again after pttl

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[3])
local shard = ARGV[5]

-- One bucket map at a time: under two maps one Discord bucket could have two gates. A caller
-- with another map does not even join the line (it would hold up the waiters of this one).
local map = redis.call('GET', KEYS[6])
if map and map ~= ARGV[7] then
  redis.call('ZREM', KEYS[4], shard)
  redis.call('HDEL', KEYS[5], shard)
  local left = redis.call('PTTL', KEYS[6])
  if left < 0 then left = hold end
  return {6, left}
end

-- Join (or refresh our place in) the waiting line, drop waiters that went silent.
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
-- The marker names the server process (run_id, new at every start): a restart from RDB/AOF or a
-- failover to a replica keeps the key but may have lost a gate written just before, so a marker
-- of another process counts as lost too. (A server whose INFO has no run_id: only loss counts.)
-- The hold lasts connect_bound, not only window + margin: a permit granted just before the loss
-- may still be used up to connect_bound - hold_ms after it was asked for, and its Identify needs
-- a whole window + margin behind it.
local bound = tonumber(ARGV[2])
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
local epoch = redis.call('GET', KEYS[1])
local epoch_run, epoch_ms = nil, nil
if epoch then
  epoch_run, epoch_ms = string.match(epoch, '^(%x*):(%d+)$')
end
if (not epoch_run) or epoch_run ~= run_id then
  redis.call('SET', KEYS[1], run_id .. ':' .. now)
  -- The budget may have come back from a save that predates Identifies since: read it again.
  redis.call('DEL', KEYS[3], KEYS[7])
  return {2, bound}
end
local since = now - tonumber(epoch_ms)
if since < bound then
  return {2, bound - since}
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

-- Spend only from a count sync_budget.lua stored, never above what Discord last said.
local budget = tonumber(redis.call('GET', KEYS[3]) or '')
local word = tonumber(redis.call('HGET', KEYS[7], 'remaining') or '')
if (not budget) or (not word) or budget > word then
  return {4, 0}
end
if budget <= tonumber(ARGV[4]) then
  return {3, redis.call('PTTL', KEYS[3])}
end

redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DECR', KEYS[3])
-- The period this session start came from: a refund (release_gate.lua) returns it there only.
redis.call('HSET', KEYS[7], KEYS[2], ARGV[1])
-- This map owns the buckets at least as long as the gate may last.
redis.call('SET', KEYS[6], ARGV[7], 'PX', math.max(tonumber(ARGV[2]), redis.call('PTTL', KEYS[6])))
redis.call('ZREM', KEYS[4], shard)
redis.call('HDEL', KEYS[5], shard)
return {0, budget - 1}
