-- fetch.lua: take the next job from the first non-empty, non-paused queue, atomically
-- moving it into this worker's in-flight list (reliable fetch).
--
-- KEYS[1]            set of paused queue names
-- KEYS[2*i], KEYS[2*i+1]  for the i-th queue to try, in order: queue:NAME, inflight:IDENTITY:NAME
-- ARGV[i]            the i-th queue's name (to test against the paused set)
--
-- Returns {queue_name, payload} for the job taken, or nil when every queue is empty or paused.
-- The job is taken from the tail (oldest) and pushed at the head of the in-flight list.
for i = 1, #ARGV do
  local name = ARGV[i]
  if redis.call("SISMEMBER", KEYS[1], name) == 0 then
    local job = redis.call("RPOPLPUSH", KEYS[2 * i], KEYS[2 * i + 1])
    if job then
      return {name, job}
    end
  end
end
return nil
