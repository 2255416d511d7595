-- requeue_dead: dead tasks are re-driven, DLQ -> PENDING, with their retry budget renewed, at
-- the tail of their owner's retry list at their priority: the ids the caller read (those it was
-- given, or else the oldest of the DLQ), each with every key it touches named in KEYS.
-- KEYS: 1 DLQ index, 2 PENDING index, 3 events channel, 4 counters, 5.. the pending-work keys
--       (_lib.lua queues()), then (from Q.after) per id: its hash, its history, its retry list
-- ARGV: per id: the id, the owner and the level its retry list is of
-- Returns: {requeued count, JSON array of the ids that are not dead (unknown or moved on)}
-- Events: DLQ -> PENDING, per task
local Q = queues(KEYS, 5)
local _, stamp = now_ms()
local requeued, skipped = 0, {}
for i = 1, #ARGV, 3 do
  local id, owner, level = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local first = Q.after + i - 1
  local key = KEYS[first]
  local f = redis.call('HMGET', key, 'state', 'priority', 'owner')
  if f[1] == 'DLQ' and same_place(f[3], f[2], owner, level) then
    redis.call('HSET', key, 'state', 'PENDING', 'retry_count', '0', 'finished_at', '0', 'updated_at', stamp)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], stamp, id)
    enqueue(Q, KEYS[first + 2], 'retry', id, level, owner, false)
    changed(KEYS[first + 1], KEYS[3], id, 'DLQ', 'PENDING', stamp, nil, count(KEYS[4], 'requeued'))
    requeued = requeued + 1
  else
    skipped[#skipped + 1] = id
  end
end
local rest = '[]'
if #skipped > 0 then rest = cjson.encode(skipped) end
return {requeued, rest}
