-- Save the session of one shard, fenced by its lease: a pod that lost the lease (its successor
-- took it) must never overwrite the successor's record with an older session. Written when the
-- lease is ours, or free (nobody else can have saved since: a successor takes the lease first).
-- KEYS[1] P:lease:<total>:<shard>; KEYS[2] P:session:<total>:<shard>
-- ARGV[1] owner; ARGV[2] the record (JSON); ARGV[3] ttl_ms
-- Returns 1 when written, 0 when another owner holds the lease.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
