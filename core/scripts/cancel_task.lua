-- cancel_task: a task is withdrawn, PENDING | SCHEDULED | ACTIVE -> CANCELLED, at once.
-- An id already moved into an in-flight list but not yet claimed is skipped by claim_task.
-- An ACTIVE task leaves its consumer's in-flight list here (so the consumer's count stays
-- right) and loses its attempt token, so the worker's late report is refused as stale.
-- KEYS: 1 task hash, 2 primary list, 3 retry list, 4 scheduled set, 5 PENDING index,
--       6 CANCELLED index, 7 events channel, 8 ACTIVE index, 9 history, 10 counters
-- ARGV: 1 id, 2 in-flight key prefix (the owner of an ACTIVE task is learnt here), 3 the states
--       it is allowed from (ACTIONS['cancel'], comma-separated; each has its own clean-up below)
-- Returns: {'ok', from_state} | {'wrong_state', state} | {'not_found'}
-- Events: PENDING | SCHEDULED | ACTIVE -> CANCELLED
local id = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'state', 'consumer')
local state = f[1]
if not state then return {'not_found'} end
if not one_of(ARGV[3], state) then return {'wrong_state', state} end
if state == 'PENDING' then
  redis.call('LREM', KEYS[2], 0, id)
  redis.call('LREM', KEYS[3], 0, id)
  redis.call('ZREM', KEYS[5], id)
elseif state == 'SCHEDULED' then
  redis.call('ZREM', KEYS[4], id)
elseif state == 'ACTIVE' then
  redis.call('LREM', ARGV[2] .. f[2], 0, id)
  redis.call('ZREM', KEYS[8], id)
else
  return {'wrong_state', state}
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'due_at', 0, 'attempt', '', 'finished_at', now,
  'updated_at', now)
redis.call('ZADD', KEYS[6], now, id)
changed({id = id, from = state, to = 'CANCELLED', at = now, channel = KEYS[7], history = KEYS[9],
  counters = KEYS[10], counter = 'cancelled'})
return {'ok', state}
