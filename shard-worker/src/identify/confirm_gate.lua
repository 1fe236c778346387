-- After the gateway ANSWERED the Identify (READY, op 9, its close: the shards; hold = window +
-- answer margin), or after it was sent (the twilight-compatible facade, a failed send; hold =
-- window + margin): make the gate last the hold from now (owner-checked).
-- KEYS[1] P:gate:<bucket>; ARGV[1] owner; ARGV[2] hold_ms
-- Returns 1 when shrunk, 0 when the gate is no longer ours (it expired or Redis lost it;
-- the epoch marker covers the second case).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
