-- requeue_dead: dead tasks are re-driven, DLQ -> PENDING, with their retry budget renewed, at
-- the tail of the retry list: the ids given, or else the oldest of the DLQ; one bounded batch.
-- KEYS: 1 DLQ index, 2 PENDING index, 3 retry list, 4 events channel, 5 counters
-- ARGV: 1 task key prefix, 2 history key suffix, 3 batch size, 4.. ids ('' none: the oldest dead)
-- Returns: {requeued count, JSON array of the given ids that are not dead (unknown or moved on)}
-- Events: DLQ -> PENDING, per task
local ids = {}
for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1) end
local now = now_ms()
local requeued, skipped = 0, {}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'state') == 'DLQ' then
    redis.call('HSET', key, 'state', 'PENDING', 'retry_count', 0, 'finished_at', 0, 'updated_at', now)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('RPUSH', KEYS[3], id)
    changed({id = id, from = 'DLQ', to = 'PENDING', at = now, channel = KEYS[4],
      history = key .. ARGV[2], counters = KEYS[5], counter = 'requeued'})
    requeued = requeued + 1
  else
    skipped[#skipped + 1] = id
  end
end
local rest = '[]'
if #skipped > 0 then rest = cjson.encode(skipped) end
return {requeued, rest}
