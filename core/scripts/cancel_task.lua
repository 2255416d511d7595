-- cancel_task: a waiting task is withdrawn, PENDING | SCHEDULED -> CANCELLED.
-- An id already moved into an in-flight list but not yet claimed is skipped by claim_task.
-- KEYS: 1 task hash, 2 primary list, 3 retry list, 4 scheduled set, 5 PENDING index,
--       6 CANCELLED index, 7 events channel
-- ARGV: 1 id
-- Returns: {'ok', from_state} | {'wrong_state', state} | {'not_found'}
-- Events: PENDING | SCHEDULED -> CANCELLED
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'not_found'} end
if state == 'PENDING' then
  redis.call('LREM', KEYS[2], 0, id)
  redis.call('LREM', KEYS[3], 0, id)
  redis.call('ZREM', KEYS[5], id)
elseif state == 'SCHEDULED' then
  redis.call('ZREM', KEYS[4], id)
else
  return {'wrong_state', state}
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'due_at', 0, 'finished_at', now, 'updated_at', now)
redis.call('ZADD', KEYS[6], now, id)
publish(KEYS[7], id, state, 'CANCELLED', now)
return {'ok', state}
