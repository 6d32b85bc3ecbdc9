-- unique/end.lua: what a unique job's end does to its locks.  Queued by the worker inside
-- the MULTI that acknowledges the job or writes its retry or dead entry, so the lock
-- changes and that write happen together or not at all.
--
-- KEYS[1]  the enqueue lock hash (unique:DIGEST)
-- KEYS[2]  the run lock hash (unique:DIGEST:run)
-- ARGV[1]  the job's jid: a lock is changed only while this jid holds it (compare-and-delete)
-- ARGV[2]  "1" to delete the enqueue lock (until_executed: the job succeeded, died or was dropped)
-- ARGV[3]  milliseconds to set the enqueue lock's TTL to, "0" to leave it (a job going to
--          the retry set keeps its lock until after its retry is due)
-- ARGV[4]  "1" to delete the run lock (while_executing: the job ended, however)
--
-- Returns the number of locks deleted.
local deleted = 0
if redis.call("HGET", KEYS[1], "jid") == ARGV[1] then
  if ARGV[2] == "1" then
    deleted = deleted + redis.call("DEL", KEYS[1])
  elseif tonumber(ARGV[3]) > 0 then
    redis.call("PEXPIRE", KEYS[1], ARGV[3])
  end
end
if ARGV[4] == "1" and redis.call("HGET", KEYS[2], "jid") == ARGV[1] then
  deleted = deleted + redis.call("DEL", KEYS[2])
end
return deleted
