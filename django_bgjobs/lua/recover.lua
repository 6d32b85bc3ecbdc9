-- recover.lua: push back the in-flight jobs of a worker that is gone, and bury poison jobs.
--
-- KEYS[1]  the inflight-owners hash (identity -> JSON list of queue names)
-- KEYS[2]  the worker's heartbeat hash key; if it still exists the worker is alive and
--          nothing is touched
-- KEYS[3]  the crashes hash (jid -> how many times a worker died with the job in flight, and
--          "<jid>:by" -> the worker that started it since)
-- KEYS[4]  the dead set
-- KEYS[2*i+3], KEYS[2*i+4]  for each of its queues: inflight:IDENTITY:NAME, queue:NAME
-- ARGV[1]  the worker's identity
-- ARGV[2]  MAX_CRASHES; "0" when a worker pushes back its own jobs as it stops (no crash:
--          nothing is counted)
-- ARGV[3]  now, epoch seconds: the dead entry's score
-- ARGV[4]  DEAD_TIMEOUT_S and ARGV[5] DEAD_MAX_JOBS: the dead set's trimming, as retry.py does it
-- ARGV[6]  seconds the crashes hash lives after its last change
-- ARGV[7]  the JSON members a buried payload gets, starting with a comma
--          (',"dead_reason":...,"failed_at":...'), replacing any of the same names
-- ARGV[8...] those members' names
-- A payload is never re-encoded (see json_members.lua): members are dropped and appended.
--
-- Returns {moved, buried payload, buried payload, ...}: the number of jobs pushed back (-1
-- when the worker is still alive), then the dead entry of each job buried as poison.
-- A job goes to the tail of its queue (the end workers take from), oldest taken last, so
-- they run next and in the order they were first fetched.
--
-- Which jobs a crash counts against: every job in flight the first time (it may have been
-- running), and afterwards only a job this worker had started (the processor writes
-- "<jid>:by" = its identity in the crashes hash before running a job whose payload carries
-- "crashes"), so a job that was only taken ahead (prefetched) next to a poison job is not
-- counted again and again with it.  A counted job is pushed back with its "crashes" member
-- set to N.  A payload that is not a JSON object with a jid is pushed back uncounted (the
-- worker buries it as unreadable, running nothing).
--#include json_members
local death_fields = {}
for i = 8, #ARGV do
  death_fields[ARGV[i]] = true
end
local crash_fields = {crashes = true}
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {-1}
end
local max_crashes = tonumber(ARGV[2])
local moved, counted = 0, false
local buried = {}
for i = 5, #KEYS, 2 do
  while true do
    local job = redis.call("LPOP", KEYS[i])
    if not job then
      break
    end
    local jid = nil
    if max_crashes > 0 and string.sub(job, 1, 1) == "{" then
      local ok, decoded = pcall(cjson.decode, job)
      if ok and type(decoded) == "table" and type(decoded["jid"]) == "string" then
        jid = decoded["jid"]
      end
    end
    local count = false
    local crashes = 0
    if jid then
      crashes = tonumber(redis.call("HGET", KEYS[3], jid)) or 0
      if crashes == 0 or redis.call("HGET", KEYS[3], jid .. ":by") == ARGV[1] then
        crashes = redis.call("HINCRBY", KEYS[3], jid, 1)
        counted = true
        count = json_members(job) ~= nil
      end
    end
    if count and crashes >= max_crashes then
      local entry = with_fields(job, death_fields, ARGV[7])
      redis.call("ZADD", KEYS[4], ARGV[3], entry)
      redis.call("HDEL", KEYS[3], jid, jid .. ":by")
      buried[#buried + 1] = entry
    else
      if count then
        job = with_fields(job, crash_fields, ',"crashes":' .. crashes)
      end
      redis.call("RPUSH", KEYS[i + 1], job)
      moved = moved + 1
    end
  end
end
if counted then
  redis.call("EXPIRE", KEYS[3], tonumber(ARGV[6]))
end
if #buried > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", tonumber(ARGV[3]) - tonumber(ARGV[4]))
  redis.call("ZREMRANGEBYRANK", KEYS[4], 0, -tonumber(ARGV[5]) - 1)
end
redis.call("HDEL", KEYS[1], ARGV[1])
return {moved, unpack(buried)}
