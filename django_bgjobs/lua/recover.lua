-- recover.lua: push back the in-flight jobs of a worker that is gone.
--
-- KEYS[1]  the inflight-owners hash (identity -> JSON list of queue names)
-- KEYS[2]  the worker's heartbeat hash key; if it still exists the worker is alive and
--          nothing is touched
-- KEYS[2*i+1], KEYS[2*i+2]  for each of its queues: inflight:IDENTITY:NAME, queue:NAME
-- ARGV[1]  the worker's identity
--
-- Returns the number of jobs pushed back, or -1 when the worker is still alive.
-- Jobs go to the tail of their queue (the end workers take from), oldest taken last,
-- so they run next and in the order they were first fetched.
if redis.call("EXISTS", KEYS[2]) == 1 then
  return -1
end
local moved = 0
for i = 3, #KEYS, 2 do
  while redis.call("LMOVE", KEYS[i], KEYS[i + 1], "LEFT", "RIGHT") do
    moved = moved + 1
  end
end
redis.call("HDEL", KEYS[1], ARGV[1])
return moved
