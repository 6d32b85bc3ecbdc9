-- push.lua: the one script that writes new payloads -- to a queue (due now) or to the schedule
-- set (due later) -- together with whatever the features attached to each (a guard that must
-- hold, writes that go with it), in one atomic step.  Called only by client.push
-- (django_bgjobs/client.py), for every producer.  It knows no feature: a unique lock, a
-- recurring tick, a batch's counts, a task's result are all data in the plan below.
--
-- Plain form: payloads due now, all to one queue, nothing attached (perform_later's usual call;
-- Sidekiq's SADD queues + LPUSH without MULTI and EXEC).
--   KEYS[1]  the set of queue names
--   KEYS[2]  the queue's list
--   ARGV[1]  the queue's name
--   ARGV[2..] the payloads, oldest first (LPUSHed: they run after the jobs already waiting)
--   Returns the queue's length after the push.
--
-- Planned form: anything else.
--   KEYS[1]  the set of queue names
--   ARGV[1]  "" (no queue is named "": this tells the two forms apart)
--   ARGV[2]  the plan, a JSON list with one object per payload, in the order of ARGV[3..]:
--     "to"      "L" head of the queue (LPUSH: runs after the jobs waiting), "R" its tail (RPUSH:
--               runs next; priority jobs), or "Z" the schedule set
--     "key"     the queue's list, or the schedule set
--     "queue"   the queue's name ("L", "R": added to KEYS[1])
--     "at"      the score ("Z": epoch seconds the job is due)
--     "guards"  (optional) conditions checked in order; the first that fails refuses the payload:
--        {"if": "absent", "key": K, "field": F, "value": V}  passes when hash K has no field F.
--            Claims nothing itself (the payload's writes set F), so a refused payload leaves no
--            trace.  When F already holds V the payload was written by an earlier try of this
--            same push whose reply was lost: it counts as written and nothing is written again.
--            With "evict": {"list": L, "zset": Z, "raw": R, "moved": M}, a field F held by
--            another payload does not refuse: that payload (hash field R) is removed from Z or
--            from list L -- where, when hash field M is set (it was scheduled, and the poller
--            may have rewritten it on the way), it is looked for by its F value -- and K is
--            deleted; then the guard passes.
--        {"if": "above", "key": K, "field": F, "value": N}   passes when N is greater than the
--            number in hash field F (or F is missing), and sets F to N at once: a later guard's
--            refusal leaves it taken (a recurring tick is used up even when its job's lock is held).
--        {"if": "member", "key": K, "member": M}   passes when M was in sorted set K, and removes
--            it at once (so M is pushed once, however many clients try).
--        "refused" (any guard, optional): writes done when this guard refuses.
--     "writes"  (optional) commands done when the payload is written, each a list
--               [command, key, arguments...]; command one of SADD, SREM, HSET, HINCRBY, SET,
--               EXPIRE, PEXPIRE, ZADD, ZREMRANGEBYSCORE, ZREMRANGEBYRANK.
--   ARGV[3..] the payloads
--   Payloads are written in order; consecutive ones without guards going to the same place go
--   in one LPUSH, RPUSH or ZADD.  The plan is checked before the first write.
--   Returns a list with one item per payload:
--     {1}                          written
--     {1, i, holder, evicted}      written after guard i evicted `holder` (F's value); `evicted`
--                                  the payload removed, or false when it was not waiting any more
--     {0, i, current}              refused by guard i; `current` the field's value (false if none)
--
-- Over maxmemory (noeviction) the script's first write is refused, and nothing is written.
if ARGV[1] ~= "" then
  redis.call("SADD", KEYS[1], ARGV[1])
  local length = 0
  for first = 2, #ARGV, 1000 do  -- unpack() has a limit on how many values it returns at once
    length = redis.call("LPUSH", KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
  end
  return length
end

local WRITES = {
  SADD = true, SREM = true, HSET = true, HINCRBY = true, SET = true, EXPIRE = true, PEXPIRE = true,
  ZADD = true, ZREMRANGEBYSCORE = true, ZREMRANGEBYRANK = true,
}

local GUARDS = {absent = true, above = true, member = true}

local plan = cjson.decode(ARGV[2])

-- The plan is checked before the first write, so a bad one writes nothing.
local function check(writes)
  for _, command in ipairs(writes or {}) do
    if not WRITES[command[1]] then
      error("push.lua: " .. tostring(command[1]) .. " is not a write a push may do")
    end
  end
end
for _, entry in ipairs(plan) do
  check(entry["writes"])
  for _, guard in ipairs(entry["guards"] or {}) do
    if not GUARDS[guard["if"]] then
      error("push.lua: unknown guard " .. tostring(guard["if"]))
    end
    check(guard["refused"])
  end
end

local function run(writes)
  for _, command in ipairs(writes or {}) do
    redis.call(unpack(command))
  end
end

-- Remove the payload named by hash `guard.key` (its field `evict.raw`) from where it waits;
-- return it, or false when it waits nowhere (running, retrying, gone: the list is searched
-- only for a payload that was scheduled, so a running holder costs no scan of its queue).
local function evict(guard, holder)
  local how = guard["evict"]
  local raw = redis.call("HGET", guard["key"], how["raw"])
  local removed = false
  if raw then
    if redis.call("ZREM", how["zset"], raw) == 1 or redis.call("LREM", how["list"], 1, raw) == 1 then
      removed = raw
    elseif (redis.call("HGET", guard["key"], how["moved"]) or "") ~= "" then
      -- The poller moved it to its queue and rewrote its enqueued_at: look for it by its id
      -- ('"jid":"..."' as it appears inside the payload; never written anywhere).
      local needle = string.sub(cjson.encode({[guard["field"]] = holder}), 2, -2)
      local length = redis.call("LLEN", how["list"])
      local start = 0
      while not removed and start < length do
        for _, job in ipairs(redis.call("LRANGE", how["list"], start, start + 499)) do
          if string.find(job, needle, 1, true) then
            redis.call("LREM", how["list"], 1, job)
            removed = job
            break
          end
        end
        start = start + 500
      end
    end
  end
  redis.call("DEL", guard["key"])
  return removed
end

-- Pushes of payloads no guard can refuse wait here and go in one command per run of the same
-- destination (a bulk push: one LPUSH, not one per payload), before anything that could see them.
local batch_to, batch_key, batch = nil, nil, {}

local function flush()
  if #batch > 0 then
    local command = batch_to == "Z" and "ZADD" or (batch_to == "R" and "RPUSH" or "LPUSH")
    -- unpack() has a limit on how many values it returns at once; 1,000 is even, so ZADD's
    -- score and member pairs are never split.
    for first = 1, #batch, 1000 do
      redis.call(command, batch_key, unpack(batch, first, math.min(first + 999, #batch)))
    end
    batch = {}
  end
end

local named = {}  -- queue names already added to KEYS[1] by this call

local function push(entry, raw)
  local to = entry["to"]
  if to ~= "Z" and not named[entry["queue"]] then
    redis.call("SADD", KEYS[1], entry["queue"])
    named[entry["queue"]] = true
  end
  if to ~= batch_to or entry["key"] ~= batch_key then
    flush()
    batch_to, batch_key = to, entry["key"]
  end
  if to == "Z" then
    table.insert(batch, entry["at"])
  end
  table.insert(batch, raw)
end

local results = {}
for index, entry in ipairs(plan) do
  local result = {1}
  local write = true
  if entry["guards"] then
    flush()  -- a guard may read what the payloads before it wrote
  end
  for position, guard in ipairs(entry["guards"] or {}) do
    local kind, passes, current = guard["if"], false, false
    if kind == "absent" then
      current = redis.call("HGET", guard["key"], guard["field"])
      if not current then
        passes = true
      elseif current == guard["value"] then
        write = false  -- written by an earlier try of this push: {1}, and nothing again
        break
      elseif guard["evict"] then
        result = {1, position, current, evict(guard, current)}
        passes = true
      end
    elseif kind == "above" then
      current = redis.call("HGET", guard["key"], guard["field"])
      local stored = current and tonumber(current)
      if not stored or tonumber(guard["value"]) > stored then
        redis.call("HSET", guard["key"], guard["field"], guard["value"])
        passes = true
      end
    else  -- "member"
      passes = redis.call("ZREM", guard["key"], guard["member"]) == 1
    end
    if not passes then
      run(guard["refused"])
      result = {0, position, current}
      write = false
      break
    end
  end
  if write then
    push(entry, ARGV[index + 2])
    if entry["writes"] then
      flush()
      run(entry["writes"])
    end
  end
  results[index] = result
end
flush()
return results
