-- push.lua: a plain enqueue of jobs due now to one queue -- Sidekiq's SADD queues + LPUSH,
-- in one atomic step and one command (the client's fast path: no MULTI, no EXEC).
--
-- KEYS[1]  the set of queue names
-- KEYS[2]  the queue's list
-- ARGV[1]  the queue's name
-- ARGV[2..] the payloads, oldest first (LPUSHed: they run after the jobs already waiting)
--
-- Returns the queue's length after the push.  Over maxmemory (noeviction) the SADD, the
-- script's first write, is refused and nothing is written.
redis.call("SADD", KEYS[1], ARGV[1])
local length = 0
for first = 2, #ARGV, 1000 do  -- unpack() has a limit on how many values it returns at once
  length = redis.call("LPUSH", KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return length
