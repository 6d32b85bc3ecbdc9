-- fetch.lua: acknowledge finished jobs and take the next ones, in one atomic step
-- (reliable fetch: a job taken is moved into this worker's in-flight list, never only
-- handed to the caller, so a worker killed with the reply in flight loses nothing).
--
-- KEYS[1]                  set of paused queue names
-- KEYS[2*i], KEYS[2*i+1]   for the i-th queue to try, in order: queue:NAME, inflight:IDENTITY:NAME
-- ARGV[1]                  the most jobs to take (0: only acknowledge)
-- ARGV[2]                  n, the number of queues
-- ARGV[3] .. ARGV[n+2]     the queues' names, in the order of KEYS (tested against the paused set)
-- ARGV[n+3] ..             pairs (i, payload): a finished job to remove from the i-th queue's
--                          in-flight list (LREM 1, as the worker's ack always did)
--
-- Returns a flat list {name, payload, name, payload, ...} of the jobs taken, in the order
-- taken, and none when every queue is empty or paused.  Jobs are taken from the tail
-- (oldest) of the first non-empty, non-paused queue, then the next queue, and pushed at
-- the head of the in-flight list, exactly as one RPOPLPUSH per job would.
local n = tonumber(ARGV[2])
for a = n + 3, #ARGV, 2 do
  redis.call("LREM", KEYS[2 * tonumber(ARGV[a]) + 1], 1, ARGV[a + 1])
end
local want = tonumber(ARGV[1])
local taken = {}
if want < 1 then
  return taken
end
for i = 1, n do
  local name = ARGV[i + 2]
  if redis.call("SISMEMBER", KEYS[1], name) == 0 then
    while #taken < 2 * want do
      local job = redis.call("RPOPLPUSH", KEYS[2 * i], KEYS[2 * i + 1])
      if not job then
        break
      end
      taken[#taken + 1] = name
      taken[#taken + 1] = job
    end
    if #taken >= 2 * want then
      break
    end
  end
end
return taken
