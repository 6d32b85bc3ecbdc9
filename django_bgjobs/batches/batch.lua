-- batches/batch.lua: every change to a batch that can end it, and the record of the callbacks it ends
-- with, in one atomic step: each callback is recorded exactly once, however many workers
-- finish a batch's last jobs at the same instant.  Run by the client (create, open, seal) and
-- by the worker (success, failure, dead), the latter inside the MULTI that acknowledges the
-- job or writes its retry or dead entry.
--
-- This script pushes no job.  A callback that fires is recorded in the outbox (KEYS[2]); the
-- process that wrote the end then pushes it through the one push (client.push, with the client
-- middleware), with a guard that takes it out of the outbox in the same atomic step, so it is
-- pushed once; an entry left there by a process that died in between is pushed by the next
-- drain (batches.push_fired_callbacks, run by every worker's heartbeat).
--
-- KEYS[1]  the batches index (sorted set of bids by creation time)
-- KEYS[2]  the callback outbox (sorted set of JSON entries by when they may be taken)
-- ARGV[1]  the operation, below
-- ARGV[2]  the batch id
-- ARGV[3]  now, epoch seconds, as text
-- ARGV[4]  key of a batch's hash with "{bid}" where the id goes (keys.batch("{bid}"))
-- ARGV[5]  the same for its pending jids set (keys.batch_jids)
-- ARGV[6]  the same for its failures hash (keys.batch_failures)
-- ARGV[7]  the same for its dead jids set (keys.batch_dead)
-- ARGV[8]  seconds a batch's keys live after its last change while it has not ended
-- ARGV[9]  seconds they live once it has ended (succeeded, or every job left is dead)
-- ARGV[10] ... the operation's own arguments:
--
--   "create"   [10] description, [11] callbacks (JSON list of {"event": ...}), [12] the
--              callbacks' queue, [13] the parent batch's id or "".  A new batch with one
--              jobs() block open; a child of the parent when the parent still exists.
--   "open"     [10] "1" to count one more open jobs() block, "0" not to (a job of the batch
--              adding to it: its own pending place keeps the batch from ending).
--              Returns 0 when the batch no longer exists, else 1.
--   "seal"     a jobs() block ended: one open block fewer.
--   "success"  [10] jid: that job succeeded.
--   "failure"  [10] jid, [11] JSON of its error: it failed (and will retry, or not at all).
--   "dead"     [10] jid, [11] JSON of its error: it went to the dead set.
--   "claim"    [10] epoch seconds, [11] a count: up to that many outbox entries due now (or
--              within a second) are given that score (hidden from other drains until then, in
--              case this one dies) and returned, oldest first.  ARGV[2] is unused.
--   "dropped"  [10] an outbox entry, [11] its callback's jid: the entry will not be pushed (a
--              client middleware stopped it); it leaves the outbox and, when ARGV[2] names the
--              parent batch it joined, counts there as a success.  Nothing when the entry is
--              gone already (pushed or dropped by another drain).
--
-- "create" returns 1; "claim" the entries; the others the list of "bid:event" fired by this
-- call (this batch's and its ancestors').
--
-- An outbox entry is the JSON object {"bid", "event", "index", "jid", "queue", "fired_at"} and
-- "parent" when the callback joined the parent batch: its jid (derived from batch, event and
-- index, so the same callback can never be two jobs) is then in the parent's pending set and
-- total from the instant it fires, so the parent cannot end before it.
--
-- A batch is complete when no jobs() block is open, its child batches are complete, and
-- every pending job has failed at least once (pending == failures); it has succeeded when
-- no jobs() block is open, its child batches have succeeded and no job is pending.  A child
-- batch's callbacks join its parent as jobs, so the parent waits for them too.
local op, bid, now = ARGV[1], ARGV[2], ARGV[3]
local unfinished_ttl, ended_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])

local function key(template, id)
  local s, e = string.find(template, "{bid}", 1, true)
  return string.sub(template, 1, s - 1) .. id .. string.sub(template, e + 1)
end

local function keys_of(id)
  return key(ARGV[4], id), key(ARGV[5], id), key(ARGV[6], id), key(ARGV[7], id)
end

local function touch(id, ttl)
  local h, j, f, d = keys_of(id)
  redis.call("EXPIRE", h, ttl)
  redis.call("EXPIRE", j, ttl)
  redis.call("EXPIRE", f, ttl)
  redis.call("EXPIRE", d, ttl)
end

local fired = {}
local recorded = 0  -- outbox entries this call recorded: their scores keep them in firing order

-- Record the callbacks of `id` for `event` in the outbox; in the parent batch when there is one.
local function record_callbacks(id, hash, event)
  table.insert(fired, id .. ":" .. event)
  local meta = redis.call("HMGET", hash, "callbacks", "callback_queue", "parent")
  if not meta[1] then
    return
  end
  local queue = meta[2] or "default"
  local parent = meta[3] or ""
  local parent_hash, parent_jids = key(ARGV[4], parent), key(ARGV[5], parent)
  local in_parent = parent ~= "" and redis.call("EXISTS", parent_hash) == 1
  for i, callback in ipairs(cjson.decode(meta[1])) do
    if callback["event"] == event then
      local jid = string.sub(redis.sha1hex(id .. ":" .. event .. ":" .. (i - 1)), 1, 24)
      local entry = {bid = id, event = event, index = i - 1, jid = jid, queue = queue, fired_at = now}
      if in_parent then
        entry["parent"] = parent
        redis.call("SADD", parent_jids, jid)
        redis.call("HINCRBY", parent_hash, "total", 1)
      end
      recorded = recorded + 1
      redis.call("ZADD", KEYS[2], string.format("%.17g", tonumber(now) + recorded / 1e6), cjson.encode(entry))
    end
  end
end

-- Fire whatever `id` has reached, then look at its parent if that changed, and so on up.
local function settle(id)
  while id ~= "" do
    local hash, jids, failures, dead = keys_of(id)
    if redis.call("EXISTS", hash) == 0 then
      return
    end
    local s = redis.call("HMGET", hash, "open", "kids_incomplete", "kids_pending", "complete_at", "success_at", "parent")
    local open, kids_incomplete, kids_pending = tonumber(s[1] or "0"), tonumber(s[2] or "0"), tonumber(s[3] or "0")
    local complete, success, parent = s[4], s[5], s[6] or ""
    local pending = redis.call("SCARD", jids)
    local parent_hash = key(ARGV[4], parent)
    local has_parent = parent ~= "" and redis.call("EXISTS", parent_hash) == 1
    local parent_changed = false
    if open <= 0 and kids_incomplete <= 0 then
      if not complete and pending == redis.call("HLEN", failures) then
        complete = now
        redis.call("HSET", hash, "complete_at", now)
        record_callbacks(id, hash, "complete")
        if has_parent then
          redis.call("HINCRBY", parent_hash, "kids_incomplete", -1)
          parent_changed = true
        end
      end
      if not success and kids_pending <= 0 and pending == 0 then
        success = now
        redis.call("HSET", hash, "success_at", now)
        record_callbacks(id, hash, "success")
        if has_parent then
          redis.call("HINCRBY", parent_hash, "kids_pending", -1)
          parent_changed = true
        end
      end
    end
    local ended = success or (complete and pending == redis.call("SCARD", dead))
    touch(id, ended and ended_ttl or unfinished_ttl)
    if not parent_changed then
      return
    end
    id = parent
  end
end

local hash, jids, failures, dead = keys_of(bid)

if op == "create" then
  local parent = ARGV[13]
  if parent ~= "" and redis.call("EXISTS", key(ARGV[4], parent)) == 0 then
    parent = ""
  end
  redis.call("HSET", hash, "description", ARGV[10], "callbacks", ARGV[11], "callback_queue", ARGV[12],
    "parent", parent, "created_at", now, "open", 1, "total", 0, "kids", 0, "kids_incomplete", 0, "kids_pending", 0)
  redis.call("EXPIRE", hash, unfinished_ttl)
  redis.call("ZADD", KEYS[1], now, bid)
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", tonumber(now) - unfinished_ttl)
  if parent ~= "" then
    local parent_hash = key(ARGV[4], parent)
    redis.call("HINCRBY", parent_hash, "kids", 1)
    redis.call("HINCRBY", parent_hash, "kids_incomplete", 1)
    redis.call("HINCRBY", parent_hash, "kids_pending", 1)
    touch(parent, unfinished_ttl)
  end
  return 1
end

if op == "open" then
  if redis.call("EXISTS", hash) == 0 then
    return 0
  end
  if ARGV[10] == "1" then
    redis.call("HINCRBY", hash, "open", 1)
  end
  touch(bid, unfinished_ttl)
  return 1
end

if op == "claim" then
  -- Up to a second ahead: entries recorded by a call whose clock ran a little ahead (and their
  -- order fractions) are due; entries taken by a drain are CLAIM_S ahead.
  local entries = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", tonumber(now) + 1, "LIMIT", 0, tonumber(ARGV[11]))
  for _, entry in ipairs(entries) do
    redis.call("ZADD", KEYS[2], "XX", ARGV[10], entry)
  end
  return entries
end

if op == "dropped" then
  if redis.call("ZREM", KEYS[2], ARGV[10]) == 0 or bid == "" then
    return fired
  end
  op = "success"  -- in the parent it joined: done, so the parent does not wait for it
end

if redis.call("EXISTS", hash) == 0 then
  return fired  -- expired (or never created): nothing to count any more
end
if op == "seal" then
  if redis.call("HINCRBY", hash, "open", -1) < 0 then
    redis.call("HSET", hash, "open", 0)
  end
elseif op == "success" then
  local jid = ARGV[10]
  if ARGV[1] == "dropped" then
    jid = ARGV[11]
  end
  if redis.call("SREM", jids, jid) == 0 then
    return fired  -- not pending: a second run of a job that already succeeded, or gone
  end
  redis.call("HDEL", failures, jid)
  redis.call("SREM", dead, jid)
elseif op == "failure" or op == "dead" then
  if redis.call("SISMEMBER", jids, ARGV[10]) == 0 then
    return fired
  end
  redis.call("HSET", failures, ARGV[10], ARGV[11])
  if op == "dead" then
    redis.call("SADD", dead, ARGV[10])
    if redis.call("HSETNX", hash, "death_at", now) == 1 then
      record_callbacks(bid, hash, "death")
    end
  end
else
  return redis.error_reply("batch.lua: unknown operation " .. tostring(op))
end
settle(bid)
return fired
