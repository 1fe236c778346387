-- Store the session start budget read from GET /gateway/bot, with Discord's word for its period.
-- KEYS[1] P:budget         the count the gate spends from
-- KEYS[2] P:budget-period  HASH: remaining = Discord's last word, resetAt = the period's end
--                          (server ms); and <gate key> = owner of each gate granted from this
--                          period (take_gate.lua), so a refund returns only into its own period
-- ARGV[1] remaining; ARGV[2] reset_after_ms (Discord's answer)
-- Returns the budget now stored.
--
-- Within one period Redis sees our Identifies before Discord's answer reflects them: the stored
-- count never rises, and Discord's word never rises either. A period is told by its end: two
-- answers of one period put it within the time between Discord's answer and this call (the REST
-- timeout, 15 s, and a Redis call) of each other, two periods a day apart. An answer whose end is
-- more than SAME_PERIOD later is a new period: its count is taken as it is, and the old
-- period's count and grants are dropped (keeping them would carry a stale count, with a fresh
-- TTL, into the new period).
local SAME_PERIOD = 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local word = tonumber(ARGV[1])
local reset_at = now + math.max(1, tonumber(ARGV[2]))
local current = tonumber(redis.call('GET', KEYS[1]) or '')
local stored = redis.call('HMGET', KEYS[2], 'remaining', 'resetAt')
local stored_word, stored_end = tonumber(stored[1] or ''), tonumber(stored[2] or '')
local budget = word
if stored_end and reset_at > stored_end + SAME_PERIOD then
  -- A new period.
  redis.call('DEL', KEYS[2])
else
  if stored_word and stored_word < word then word = stored_word end
  if stored_end and stored_end < reset_at then reset_at = stored_end end
  if current and current < budget then budget = current end
end
if word < budget then budget = word end
local ttl = math.max(1, reset_at - now)
redis.call('SET', KEYS[1], budget, 'PX', ttl)
redis.call('HSET', KEYS[2], 'remaining', word, 'resetAt', reset_at)
redis.call('PEXPIRE', KEYS[2], ttl)
return budget
