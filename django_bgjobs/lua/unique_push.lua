-- unique_push.lua: enqueue one unique job only if its lock is free, or by taking the lock
-- over from the job holding it ("replace"), in one atomic step: two clients enqueueing the
-- same job at the same instant enqueue it once, and a lock is never set without its job.
--
-- KEYS[1]  the lock hash (unique:DIGEST)
-- KEYS[2]  the queue list (queue:NAME); the holder, if any, waits in the same queue
-- KEYS[3]  the schedule sorted set
-- KEYS[4]  the set of queue names
-- KEYS[5]  the dead sorted set
-- KEYS[6]  the batch hash (b-BID) when the job is in a batch, else any key (unused)
-- KEYS[7]  the batch's pending jids set (b-BID-jids), likewise
-- ARGV[1]  on_conflict: "log", "raise", "reject" or "replace"
-- ARGV[2]  the payload
-- ARGV[3]  its jid
-- ARGV[4]  its queue name
-- ARGV[5]  "" to push it now, else the epoch second it is due (it goes to the schedule set)
-- ARGV[6]  "L" to push at the head of the queue (LPUSH), "R" at the tail (priority jobs)
-- ARGV[7]  the lock's TTL in milliseconds (> 0)
-- ARGV[8]  the job's class name
-- ARGV[9]  the lock type (until_executed, ...)
-- ARGV[10] the batch id, or "" when the job is in no batch
-- ARGV[11] now, epoch seconds
-- ARGV[12] the payload as it goes to the dead set when rejected (with its dead_reason)
-- ARGV[13] the dead set's cut-off score: older entries are trimmed (as retry.add_to_dead does)
-- ARGV[14] the dead set's size cap
-- ARGV[15] the batch keys' TTL in seconds
--
-- Returns a list:
--   {"pushed"}                             the lock was free: the job is enqueued and holds it
--   {"conflict", holder}                   the lock is held by jid `holder`: nothing written
--   {"rejected", holder}                   the lock is held: the payload went to the dead set
--   {"replaced", holder, holder_bid, n}    the holder's waiting payload was removed (n = 1; 0
--                                          when it was not waiting any more: running, retrying
--                                          or gone); this job is enqueued and holds the lock
local holder = redis.call("HGET", KEYS[1], "jid")
local result = {"pushed"}
if holder then
  if ARGV[1] == "reject" then
    redis.call("ZADD", KEYS[5], ARGV[11], ARGV[12])
    redis.call("ZREMRANGEBYSCORE", KEYS[5], "-inf", ARGV[13])
    redis.call("ZREMRANGEBYRANK", KEYS[5], 0, -tonumber(ARGV[14]) - 1)
    return {"rejected", holder}
  end
  if ARGV[1] ~= "replace" then
    return {"conflict", holder}
  end
  local old = redis.call("HMGET", KEYS[1], "raw", "at", "bid")
  local raw, at, holder_bid = old[1], old[2] or "", old[3] or ""
  local removed = 0
  if raw then
    if at ~= "" then
      removed = redis.call("ZREM", KEYS[3], raw)
    end
    if removed == 0 then
      removed = redis.call("LREM", KEYS[2], 1, raw)
    end
    if removed == 0 and at ~= "" then
      -- The poller moved it to the queue and rewrote its enqueued_at: find it by jid.
      local needle = '"jid":"' .. holder .. '"'
      local length = redis.call("LLEN", KEYS[2])
      local start = 0
      while removed == 0 and start < length do
        local chunk = redis.call("LRANGE", KEYS[2], start, start + 499)
        for _, job in ipairs(chunk) do
          if string.find(job, needle, 1, true) then
            removed = redis.call("LREM", KEYS[2], 1, job)
            break
          end
        end
        start = start + 500
      end
    end
  end
  redis.call("DEL", KEYS[1])
  result = {"replaced", holder, holder_bid, removed}
end

redis.call("HSET", KEYS[1], "jid", ARGV[3], "class", ARGV[8], "queue", ARGV[4], "lock", ARGV[9],
  "at", ARGV[5], "bid", ARGV[10], "locked_at", ARGV[11])
if ARGV[1] == "replace" then
  redis.call("HSET", KEYS[1], "raw", ARGV[2])
end
redis.call("PEXPIRE", KEYS[1], ARGV[7])
if ARGV[5] ~= "" then
  redis.call("ZADD", KEYS[3], ARGV[5], ARGV[2])
else
  redis.call("SADD", KEYS[4], ARGV[4])
  if ARGV[6] == "R" then
    redis.call("RPUSH", KEYS[2], ARGV[2])
  else
    redis.call("LPUSH", KEYS[2], ARGV[2])
  end
end
if ARGV[10] ~= "" then
  redis.call("SADD", KEYS[7], ARGV[3])
  redis.call("HINCRBY", KEYS[6], "total", 1)
  redis.call("EXPIRE", KEYS[6], ARGV[15])
  redis.call("EXPIRE", KEYS[7], ARGV[15])
end
return result
