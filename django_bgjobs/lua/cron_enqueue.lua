-- cron_enqueue.lua: enqueue one tick of a recurring job exactly once, however many
-- workers try: a tick is taken only if it is later than the schedule's last tick, and
-- the claim and the push happen in this one atomic step.
--
-- KEYS[1]  the schedule's state hash (cron:state:NAME)
-- KEYS[2]  the queue list (queue:NAME)
-- KEYS[3]  the set of queue names
-- ARGV[1]  the tick, epoch seconds
-- ARGV[2]  the payload to push, or "" to only mark the tick as passed (a missed tick)
-- ARGV[3]  the queue name
-- ARGV[4]  the payload's jid
-- ARGV[5]  now, epoch seconds
--
-- Returns 1 when this call took the tick, 0 when the tick (or a later one) was already taken.
local last = tonumber(redis.call("HGET", KEYS[1], "last_tick") or "-1")
if tonumber(ARGV[1]) <= last then
  return 0
end
redis.call("HSET", KEYS[1], "last_tick", ARGV[1])
if ARGV[2] ~= "" then
  redis.call("HSET", KEYS[1], "last_enqueued_at", ARGV[5], "last_jid", ARGV[4])
  redis.call("LPUSH", KEYS[2], ARGV[2])
  redis.call("SADD", KEYS[3], ARGV[3])
end
return 1
