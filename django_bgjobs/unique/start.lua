-- unique/start.lua: what a unique job does to its locks as a worker starts it, in one
-- atomic step.  Run by the worker's unique-lock server middleware (unique/server.py)
-- before `perform`.
--
-- KEYS[1]  the enqueue lock hash (unique:DIGEST)
-- KEYS[2]  the run lock hash (unique:DIGEST:run)
-- ARGV[1]  "release" (until_executing: free the enqueue lock), "run" (while_executing: take
--          the run lock) or "release_run" (until_and_while_executing: take the run lock and,
--          once it is taken, free the enqueue lock)
-- ARGV[2]  the job's jid; a lock is freed only while this jid holds it
-- ARGV[3]  this worker's heartbeat key, kept in the run lock so others can tell it died
-- ARGV[4]  the run lock's TTL in milliseconds (> 0)
-- ARGV[5]  the job's class name
-- ARGV[6]  now, epoch seconds
--
-- Returns "run" (go ahead: the locks are as the job needs them) or "busy" (the run lock is
-- held by another live job and nothing was written; the caller then reschedules the job
-- through its unit of work, or fails it, as its on_conflict says).  A held run lock is
-- taken over when its holder is this same jid (a job pushed back after its worker died) or
-- the holder's heartbeat key no longer exists (its worker died): a kill -9 never leaves a
-- job locked out until the TTL.
if ARGV[1] ~= "release" then
  local run = redis.call("HMGET", KEYS[2], "jid", "heartbeat")
  local held = run[1] and run[1] ~= ARGV[2] and (not run[2] or redis.call("EXISTS", run[2]) == 1)
  if held then
    return "busy"
  end
  redis.call("DEL", KEYS[2])
  redis.call("HSET", KEYS[2], "jid", ARGV[2], "class", ARGV[5], "heartbeat", ARGV[3], "locked_at", ARGV[6])
  redis.call("PEXPIRE", KEYS[2], ARGV[4])
  if ARGV[1] == "run" then
    return "run"
  end
end
if redis.call("HGET", KEYS[1], "jid") == ARGV[2] then
  redis.call("DEL", KEYS[1])
end
return "run"
