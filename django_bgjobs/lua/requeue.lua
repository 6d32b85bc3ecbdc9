-- requeue.lua: give back jobs a worker took ahead (prefetched) and will not start, because
-- it was told to be quiet: out of its in-flight list and back to the tail of their queue
-- (the end workers take from), so they run next, oldest first.
--
-- KEYS[1]  the in-flight list (inflight:IDENTITY:NAME)
-- KEYS[2]  the queue (queue:NAME)
-- ARGV     the payloads, in the order they were taken
--
-- Returns how many were pushed back.  A payload no longer in the in-flight list (another
-- worker already pushed it back) is not pushed twice.
local moved = 0
for a = #ARGV, 1, -1 do
  if redis.call("LREM", KEYS[1], 1, ARGV[a]) == 1 then
    redis.call("RPUSH", KEYS[2], ARGV[a])
    moved = moved + 1
  end
end
return moved
