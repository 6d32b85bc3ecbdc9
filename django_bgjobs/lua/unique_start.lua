-- unique_start.lua: what a unique job does to its locks as a worker starts it, in one
-- atomic step.  Run by the worker's Processor before `perform`.
--
-- KEYS[1]  the enqueue lock hash (unique:DIGEST)
-- KEYS[2]  the run lock hash (unique:DIGEST:run)
-- KEYS[3]  the worker's in-flight list holding the job
-- KEYS[4]  the schedule sorted set
-- ARGV[1]  "release" (until_executing: free the enqueue lock), "run" (while_executing: take
--          the run lock) or "release_run" (until_and_while_executing: take the run lock and,
--          once it is taken, free the enqueue lock)
-- ARGV[2]  the job's jid; a lock is freed only while this jid holds it
-- ARGV[3]  the payload exactly as it sits in the in-flight list
-- ARGV[4]  this worker's heartbeat key, kept in the run lock so others can tell it died
-- ARGV[5]  the run lock's TTL in milliseconds (> 0)
-- ARGV[6]  the job's class name
-- ARGV[7]  now, epoch seconds
-- ARGV[8]  "" to leave the job alone when the run lock is held; else the payload to put in
--          the schedule set instead of the in-flight one ("reschedule")
-- ARGV[9]  the epoch second to reschedule it at
--
-- Returns "run" (go ahead: the locks are as the job needs them), "rescheduled" (the run lock
-- is held: the job moved from the in-flight list to the schedule set) or "busy" (the run
-- lock is held and nothing was written).  A held run lock is taken over when its holder is
-- this same jid (a job pushed back after its worker died) or the holder's heartbeat key no
-- longer exists (its worker died): a kill -9 never leaves a job locked out until the TTL.
if ARGV[1] ~= "release" then
  local run = redis.call("HMGET", KEYS[2], "jid", "heartbeat")
  local held = run[1] and run[1] ~= ARGV[2] and (not run[2] or redis.call("EXISTS", run[2]) == 1)
  if held then
    if ARGV[8] == "" then
      return "busy"
    end
    redis.call("LREM", KEYS[3], 1, ARGV[3])
    redis.call("ZADD", KEYS[4], ARGV[9], ARGV[8])
    return "rescheduled"
  end
  redis.call("DEL", KEYS[2])
  redis.call("HSET", KEYS[2], "jid", ARGV[2], "class", ARGV[6], "heartbeat", ARGV[4], "locked_at", ARGV[7])
  redis.call("PEXPIRE", KEYS[2], ARGV[5])
  if ARGV[1] == "run" then
    return "run"
  end
end
if redis.call("HGET", KEYS[1], "jid") == ARGV[2] then
  redis.call("DEL", KEYS[1])
end
return "run"
