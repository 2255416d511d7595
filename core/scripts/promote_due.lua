-- promote_due: retries whose time has come move to the retry list, SCHEDULED -> PENDING.
-- Atomic per batch, so any number of schedulers may run at once.
-- KEYS: 1 scheduled set, 2 retry list, 3 PENDING index, 4 events channel, 5 counters
-- ARGV: 1 task key prefix, 2 batch size, 3 history key suffix
-- Returns: number of tasks promoted
-- Events: SCHEDULED -> PENDING
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local promoted = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'state') == 'SCHEDULED' then
    redis.call('HSET', key, 'state', 'PENDING', 'due_at', 0, 'updated_at', now)
    redis.call('RPUSH', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now, id)
    changed({id = id, from = 'SCHEDULED', to = 'PENDING', at = now, channel = KEYS[4],
      history = key .. ARGV[3], counters = KEYS[5], counter = 'promoted'})
    promoted = promoted + 1
  end
end
return promoted
