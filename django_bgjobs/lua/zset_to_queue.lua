-- zset_to_queue.lua: move one job from a sorted set (schedule, retry or dead) to the
-- head of its queue, only if it is still in the set, so two admins clicking "retry"
-- at once, or an admin and the poller, queue it once.  Run by django_bgjobs.api.
--
-- KEYS[1]  the sorted set holding the job
-- KEYS[2]  the queue list (queue:NAME) to push to
-- KEYS[3]  the set of queue names (queues)
-- ARGV[1]  the exact member to remove from KEYS[1]
-- ARGV[2]  the payload to push (the same job, with a fresh enqueued_at)
-- ARGV[3]  the queue name, added to KEYS[3]
--
-- Returns 1 when the job was moved, 0 when it was no longer in the set (nothing written).
if redis.call("ZREM", KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call("LPUSH", KEYS[2], ARGV[2])
redis.call("SADD", KEYS[3], ARGV[3])
return 1
