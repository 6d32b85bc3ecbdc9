-- batch.lua: every change to a batch that can end it, and the enqueueing of the callbacks it
-- ends with, in one atomic step: each callback is enqueued exactly once, however many
-- workers finish a batch's last jobs at the same instant.  Run by the client (create, open,
-- seal) and by the worker (success, failure, dead), the latter inside the MULTI that
-- acknowledges the job or writes its retry or dead entry.
--
-- KEYS[1]  the batches index (sorted set of bids by creation time)
-- KEYS[2]  the set of queue names
-- ARGV[1]  the operation, below
-- ARGV[2]  the batch id
-- ARGV[3]  now, epoch seconds, as text (copied into callback payloads as it is)
-- ARGV[4]  key of a batch's hash with "{bid}" where the id goes (keys.batch("{bid}"))
-- ARGV[5]  the same for its pending jids set (keys.batch_jids)
-- ARGV[6]  the same for its failures hash (keys.batch_failures)
-- ARGV[7]  the same for its dead jids set (keys.batch_dead)
-- ARGV[8]  the queue key prefix (keys.queue("")); a callback's queue name is appended
-- ARGV[9]  the class name of the callback job
-- ARGV[10] seconds a batch's keys live after its last change while it has not ended
-- ARGV[11] seconds they live once it has ended (succeeded, or every job left is dead)
-- ARGV[12] ... the operation's own arguments:
--
--   "create"   [12] description, [13] callbacks (JSON list of {"event": ...}), [14] the
--              callbacks' queue, [15] the parent batch's id or "".  A new batch with one
--              jobs() block open; a child of the parent when the parent still exists.
--   "open"     [12] "1" to count one more open jobs() block, "0" not to (a job of the batch
--              adding to it: its own pending place keeps the batch from ending).
--              Returns 0 when the batch no longer exists, else 1.
--   "seal"     a jobs() block ended: one open block fewer.
--   "success"  [12] jid: that job succeeded.
--   "failure"  [12] jid, [13] JSON of its error: it failed (and will retry, or not at all).
--   "dead"     [12] jid, [13] JSON of its error: it went to the dead set.
--
-- "create" returns 1; "seal", "success", "failure" and "dead" return the list of
-- "bid:event" fired by this call (this batch's and its ancestors').
--
-- A batch is complete when no jobs() block is open, its child batches are complete, and
-- every pending job has failed at least once (pending == failures); it has succeeded when
-- no jobs() block is open, its child batches have succeeded and no job is pending.  A child
-- batch's callbacks join its parent as jobs, so the parent waits for them too.
local op, bid, now = ARGV[1], ARGV[2], ARGV[3]
local unfinished_ttl, ended_ttl = tonumber(ARGV[10]), tonumber(ARGV[11])

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

-- Enqueue the callback jobs of `id` for `event`; in the parent batch when there is one.
local function enqueue_callbacks(id, hash, event)
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
      -- A jid derived from (batch, event, index): the same callback can never be two jobs.
      local jid = string.sub(redis.sha1hex(id .. ":" .. event .. ":" .. (i - 1)), 1, 24)
      local payload = '{"class":' .. cjson.encode(ARGV[9]) .. ',"args":' .. cjson.encode({id, event, i - 1})
        .. ',"retry":true,"queue":' .. cjson.encode(queue) .. ',"jid":"' .. jid .. '","created_at":' .. now
      if in_parent then
        payload = payload .. ',"bid":' .. cjson.encode(parent)
        redis.call("SADD", parent_jids, jid)
        redis.call("HINCRBY", parent_hash, "total", 1)
      end
      payload = payload .. ',"enqueued_at":' .. now .. '}'
      redis.call("LPUSH", ARGV[8] .. queue, payload)
      redis.call("SADD", KEYS[2], queue)
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
        enqueue_callbacks(id, hash, "complete")
        if has_parent then
          redis.call("HINCRBY", parent_hash, "kids_incomplete", -1)
          parent_changed = true
        end
      end
      if not success and kids_pending <= 0 and pending == 0 then
        success = now
        redis.call("HSET", hash, "success_at", now)
        enqueue_callbacks(id, hash, "success")
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
  local parent = ARGV[15]
  if parent ~= "" and redis.call("EXISTS", key(ARGV[4], parent)) == 0 then
    parent = ""
  end
  redis.call("HSET", hash, "description", ARGV[12], "callbacks", ARGV[13], "callback_queue", ARGV[14],
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
  if ARGV[12] == "1" then
    redis.call("HINCRBY", hash, "open", 1)
  end
  touch(bid, unfinished_ttl)
  return 1
end

if redis.call("EXISTS", hash) == 0 then
  return fired  -- expired (or never created): nothing to count any more
end
if op == "seal" then
  if redis.call("HINCRBY", hash, "open", -1) < 0 then
    redis.call("HSET", hash, "open", 0)
  end
elseif op == "success" then
  if redis.call("SREM", jids, ARGV[12]) == 0 then
    return fired  -- not pending: a second run of a job that already succeeded, or gone
  end
  redis.call("HDEL", failures, ARGV[12])
  redis.call("SREM", dead, ARGV[12])
elseif op == "failure" or op == "dead" then
  if redis.call("SISMEMBER", jids, ARGV[12]) == 0 then
    return fired
  end
  redis.call("HSET", failures, ARGV[12], ARGV[13])
  if op == "dead" then
    redis.call("SADD", dead, ARGV[12])
    if redis.call("HSETNX", hash, "death_at", now) == 1 then
      enqueue_callbacks(bid, hash, "death")
    end
  end
else
  return redis.error_reply("batch.lua: unknown operation " .. tostring(op))
end
settle(bid)
return fired
