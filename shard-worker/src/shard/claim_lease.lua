-- Take or renew the lease of one shard: granted when free or already ours. A granted lease also
-- keeps the shard's saved session alive (its TTL refreshed), so a quiet shard's record lasts as
-- long as its lease plus the resume window, whether or not its seq moves.
-- KEYS[1] P:lease:<total>:<shard>; KEYS[2] P:session:<total>:<shard>
-- ARGV[1] owner; ARGV[2] lease ttl_ms; ARGV[3] session record ttl_ms
-- Returns {1, 0} when held by us now, {0, pttl} when another owner holds it.
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
