-- promote_due: retries whose time has come move to their owner's retry list at their priority,
-- SCHEDULED -> PENDING; owners held until a time that has come may run again (_lib.lua
-- release_due_holds). Atomic per batch, so any number of schedulers may run at once.
-- KEYS: 1 scheduled set, 2 PENDING index, 3 events channel, 4 counters,
--       5..14 the pending-work keys (_lib.lua queues())
-- ARGV: 1 task key prefix, 2 batch size, 3 history key suffix, 4 the pending-work prefix
-- Returns: number of tasks promoted
-- Events: SCHEDULED -> PENDING
local Q = queues(KEYS, ARGV, 5, 4)
local now, stamp = now_ms()
release_due_holds(Q, now)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stamp, 'LIMIT', '0', ARGV[2])
local promoted = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'state', 'priority', 'owner')
  if f[1] == 'SCHEDULED' then
    redis.call('HSET', key, 'state', 'PENDING', 'due_at', '0', 'updated_at', stamp)
    enqueue(Q, 'retry', id, level_of(f[2]), f[3] or '', false)
    redis.call('ZADD', KEYS[2], stamp, id)
    changed(key .. ARGV[3], KEYS[3], id, 'SCHEDULED', 'PENDING', stamp, nil, count(KEYS[4], 'promoted'))
    promoted = promoted + 1
  end
end
return promoted
