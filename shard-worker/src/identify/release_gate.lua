-- Nothing was sent with the gate: give it back and return the session start (owner-checked).
-- KEYS[1] P:gate:<bucket>; KEYS[2] P:budget; ARGV[1] owner
-- Returns 1 when released, 0 when the gate was not ours any more.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('INCR', KEYS[2])
  end
  return 1
end
return 0
