-- enqueue_due.lua: move jobs whose time has come from a sorted set (schedule or retry)
-- to the head of their queue, atomically, so many pollers never move one job twice
-- and a crash between the two steps cannot lose it.
--
-- KEYS[1]  the sorted set (schedule or retry), scored by epoch seconds
-- KEYS[2]  the set of queue names
-- ARGV[1]  now, epoch seconds (jobs scored <= now are due)
-- ARGV[2]  the queue key prefix, e.g. "queue:" (the queue name is appended)
-- ARGV[3]  the most jobs to move in this call
--
-- Returns the number of jobs moved.
--
-- The payload is not re-encoded (cjson would round large integers in the arguments):
-- its trailing "at" or "enqueued_at" field, which payload.dumps writes last, is replaced
-- in place by a fresh "enqueued_at"; a payload without one gets it appended.
local jobs = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
local stamp = ',"enqueued_at":' .. ARGV[1] .. '}'
for _, job in ipairs(jobs) do
  local queue = "default"
  local ok, decoded = pcall(cjson.decode, job)
  local is_object = ok and type(decoded) == "table" and string.sub(job, 1, 1) == "{"
  if is_object and type(decoded["queue"]) == "string" and decoded["queue"] ~= "" then
    queue = decoded["queue"]
  end
  local fresh = job
  if is_object and next(decoded) ~= nil then
    local s = string.find(job, ',"enqueued_at":[%d%.eE%+%-]+}$') or string.find(job, ',"at":[%d%.eE%+%-]+}$')
    if s then
      fresh = string.sub(job, 1, s - 1) .. stamp
    else
      fresh = string.sub(job, 1, -2) .. stamp
    end
  end
  redis.call("ZREM", KEYS[1], job)
  redis.call("LPUSH", ARGV[2] .. queue, fresh)
  redis.call("SADD", KEYS[2], queue)
end
return #jobs
