-- move_to_queue.lua: move jobs already in Redis from a sorted set (schedule, retry or dead) to
-- the head of their queues.  Each job leaves the set and reaches its queue in this one atomic
-- step, so it is moved once however many pollers and admins race for it, and a crash cannot
-- lose it between the two.  The only script for such moves, called through
-- django_bgjobs/moves.py by the poller (mode "due") and the monitoring API (mode "members").
--
-- KEYS[1]  the sorted set holding the jobs, scored by epoch seconds
-- KEYS[2]  the set of queue names (queues)
-- ARGV[1]  the mode: "due" or "members" (below)
-- ARGV[2]  now, epoch seconds (the "due" bound)
-- ARGV[3]  the moved payloads' new enqueued_at, as JSON (payload.stamp: seconds or milliseconds)
-- ARGV[4]  the queue key prefix, e.g. "queue:" (a queue's name is appended)
--
-- mode "due": ARGV[5] is the most jobs to move.  Moves the members scored <= now, lowest score
--   first, each to the queue its payload names, or to "default" when it names none or is not a
--   JSON object (left unchanged: the worker buries it in the dead set with the reason).
-- mode "members": ARGV[5], ARGV[6], ARGV[7] and so on, three per job: the exact member, its
--   queue's name, and the payload to push for it (a JSON object with neither "at" nor
--   "enqueued_at").  A member no longer in the set is skipped and nothing is written for it.
--
-- Returns the number of jobs moved.  Raises, with nothing written, when a queue to push to is a
-- key of another type than a list (the job would leave the set and its push fail: lost).
--
-- Both modes stamp enqueued_at the same way, without re-encoding the payload (see
-- json_members.lua): any "at" and "enqueued_at" members, wherever they are, are dropped and the
-- new "enqueued_at" is appended, so a payload never holds a key twice.
--#include json_members
local set_key, queues_key = KEYS[1], KEYS[2]
local mode, now, prefix = ARGV[1], ARGV[2], ARGV[4]
local stamp = ',"enqueued_at":' .. ARGV[3]
local replaced = {at = true, enqueued_at = true}

local function stamped(payload)
  return with_fields(payload, replaced, stamp) or payload
end

-- The error to return when the key of one of the queues named in names is not a list (or
-- absent), else nil.
local function wrong_type(names)
  for _, queue in ipairs(names) do
    local found = redis.call("TYPE", prefix .. queue)["ok"]
    if found ~= "list" and found ~= "none" then
      return redis.error_reply("move_to_queue.lua: " .. prefix .. queue .. " holds a " .. found
        .. ", not a list; nothing was moved")
    end
  end
  return nil
end

if mode == "due" then
  local jobs = redis.call("ZRANGEBYSCORE", set_key, "-inf", now, "LIMIT", 0, tonumber(ARGV[5]))
  if #jobs == 0 then
    return 0
  end
  local names, by_queue = {}, {}
  for _, job in ipairs(jobs) do
    local queue, fresh = "default", job
    local ok, decoded = pcall(cjson.decode, job)
    if ok and type(decoded) == "table" and string.sub(job, 1, 1) == "{" then
      if type(decoded["queue"]) == "string" and decoded["queue"] ~= "" then
        queue = decoded["queue"]
      end
      if next(decoded) ~= nil then
        fresh = stamped(job)
      end
    end
    local batch = by_queue[queue]
    if batch == nil then
      batch = {}
      by_queue[queue] = batch
      names[#names + 1] = queue
    end
    batch[#batch + 1] = fresh
  end
  local refused = wrong_type(names)
  if refused then
    return refused
  end
  -- The due members are the set's lowest ranks, so one command removes exactly those read.
  redis.call("ZREMRANGEBYRANK", set_key, 0, #jobs - 1)
  -- One LPUSH per queue, lowest score first, leaves each queue as one LPUSH per job would.
  for _, queue in ipairs(names) do
    local batch = by_queue[queue]
    for first = 1, #batch, 1000 do  -- unpack() has a limit on how many values it returns at once
      redis.call("LPUSH", prefix .. queue, unpack(batch, first, math.min(first + 999, #batch)))
    end
  end
  for first = 1, #names, 1000 do
    redis.call("SADD", queues_key, unpack(names, first, math.min(first + 999, #names)))
  end
  return #jobs
elseif mode == "members" then
  local names, seen = {}, {}
  for i = 6, #ARGV, 3 do
    if not seen[ARGV[i]] then
      seen[ARGV[i]] = true
      names[#names + 1] = ARGV[i]
    end
  end
  local refused = wrong_type(names)
  if refused then
    return refused
  end
  local moved = 0
  for i = 5, #ARGV, 3 do
    if redis.call("ZREM", set_key, ARGV[i]) == 1 then
      redis.call("LPUSH", prefix .. ARGV[i + 1], stamped(ARGV[i + 2]))
      redis.call("SADD", queues_key, ARGV[i + 1])
      moved = moved + 1
    end
  end
  return moved
end
return redis.error_reply("move_to_queue.lua: unknown mode " .. tostring(mode))
