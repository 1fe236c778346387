-- Nothing was sent with the gate: give it back and return the session start (owner-checked).
-- KEYS[1] P:gate:<bucket>; KEYS[2] P:budget; KEYS[3] P:budget-period; ARGV[1] owner
-- Optional: ARGV[2] P:gate-events (channel), ARGV[3] bucket: publish '<bucket> 0' so that the
-- bucket's waiters ask again now rather than after the PTTL they last saw.
-- Returns 1 when released, 0 when the gate was not ours any more.
-- The session start goes back only into the period it was taken from (the period records the
-- grant under the gate's key) and never above Discord's last word: a refund that crossed a
-- period boundary would count one session start Discord never gave.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('HGET', KEYS[3], KEYS[1]) == ARGV[1] then
    redis.call('HDEL', KEYS[3], KEYS[1])
    local budget = tonumber(redis.call('GET', KEYS[2]) or '')
    local word = tonumber(redis.call('HGET', KEYS[3], 'remaining') or '')
    if budget and word and budget < word then
      redis.call('INCR', KEYS[2])
    end
  end
  if ARGV[3] then
    redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' 0')
  end
  return 1
end
return 0
