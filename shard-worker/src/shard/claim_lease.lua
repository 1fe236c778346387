-- Take or renew the lease of one shard: granted when free or already ours.
-- KEYS[1] P:lease:<total>:<shard>; ARGV[1] owner; ARGV[2] ttl_ms
-- Returns {1, 0} when held by us now, {0, pttl} when another owner holds it.
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
