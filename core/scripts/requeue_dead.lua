-- requeue_dead: dead tasks are re-driven, DLQ -> PENDING, with their retry budget renewed, at
-- the tail of their owner's retry list at their priority: the ids given, or else the oldest of
-- the DLQ; one bounded batch.
-- KEYS: 1 DLQ index, 2 PENDING index, 3 events channel, 4 counters,
--       5..14 the pending-work keys (_lib.lua queues())
-- ARGV: 1 task key prefix, 2 history key suffix, 3 batch size, 4 the pending-work prefix,
--       5.. ids ('' none: the oldest dead)
-- Returns: {requeued count, JSON array of the given ids that are not dead (unknown or moved on)}
-- Events: DLQ -> PENDING, per task
local Q = queues(KEYS, ARGV, 5, 4)
local ids = {}
for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1) end
local _, stamp = now_ms()
local requeued, skipped = 0, {}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'state', 'priority', 'owner')
  if f[1] == 'DLQ' then
    redis.call('HSET', key, 'state', 'PENDING', 'retry_count', '0', 'finished_at', '0', 'updated_at', stamp)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], stamp, id)
    enqueue(Q, 'retry', id, level_of(f[2]), f[3] or '', false)
    changed(key .. ARGV[2], KEYS[3], id, 'DLQ', 'PENDING', stamp, nil, count(KEYS[4], 'requeued'))
    requeued = requeued + 1
  else
    skipped[#skipped + 1] = id
  end
end
local rest = '[]'
if #skipped > 0 then rest = cjson.encode(skipped) end
return {requeued, rest}
