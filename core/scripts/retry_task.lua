-- retry_task: an operator re-drives a finished task, FAILED | DLQ | CANCELLED -> PENDING,
-- with its retry budget renewed, at the tail of the retry list.
-- KEYS: 1 task hash, 2 retry list, 3 events channel, 4 history, 5 counters,
--       6.. index of each state named in ARGV[3..]
-- ARGV: 1 id, 2 the states it is allowed from (ACTIONS['retry'], comma-separated),
--       3.. state names, aligned with KEYS[6..]
-- Counts each origin apart, so that every edge of the flow diagram counts only its own
-- transition: `requeued` from DLQ (as requeue_dead), `requeued_failed`, `requeued_cancelled`.
-- Returns: {'ok', from_state} | {'wrong_state', state} | {'not_found'}
-- Events: FAILED | DLQ | CANCELLED -> PENDING
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'not_found'} end
if not one_of(ARGV[2], state) then return {'wrong_state', state} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'retry_count', 0, 'finished_at', 0,
  'updated_at', now)
redis.call('ZREM', index_of(state, 6, 3), id)
redis.call('ZADD', index_of('PENDING', 6, 3), now, id)
redis.call('RPUSH', KEYS[2], id)
local counter = 'requeued'
if state ~= 'DLQ' then counter = 'requeued_' .. string.lower(state) end
changed({id = id, from = state, to = 'PENDING', at = now, channel = KEYS[3], history = KEYS[4],
  counters = KEYS[5], counter = counter})
return {'ok', state}
