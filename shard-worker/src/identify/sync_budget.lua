-- Set the budget from GET /gateway/bot without ever raising a lower count within a period:
-- Redis sees our Identifies before Discord's answer does.
-- KEYS[1] P:budget; ARGV[1] remaining; ARGV[2] reset_after_ms
-- Returns the budget now stored.
local remaining = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) < remaining then
  remaining = tonumber(current)
end
redis.call('SET', KEYS[1], remaining, 'PX', math.max(1, tonumber(ARGV[2])))
return remaining
