-- retry_task: an operator re-drives a finished task, FAILED | DLQ | CANCELLED -> PENDING,
-- with its retry budget renewed, at the tail of its owner's retry list at its priority.
-- KEYS: 1 task hash, 2 events channel, 3 history, 4 counters, 5.. the pending-work keys
--       (_lib.lua queues()), then (from Q.after) the task's two lists (lists_at()), then the
--       index of each state named in ARGV[7..]
-- ARGV: 1 id, 2 the states it is allowed from (ACTIONS['retry'], comma-separated),
--       3..4 the owner and level the lists are of, 5.. state names, aligned with the indexes in
--       KEYS
-- Counts each origin apart, so that every edge of the flow diagram counts only its own
-- transition: `requeued` from DLQ (as requeue_dead), `requeued_failed`, `requeued_cancelled`.
-- Returns: {'ok', from_state} | {'wrong_state', state} | {'not_found'} | {'moved'} (read the
--          owner and level again)
-- Events: FAILED | DLQ | CANCELLED -> PENDING
local Q = queues(KEYS, 5)
local id = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'state', 'priority', 'owner')
local state = f[1]
if not state then return {'not_found'} end
if not one_of(ARGV[2], state) then return {'wrong_state', state} end
if not same_place(f[3], f[2], ARGV[3], ARGV[4]) then return {'moved'} end
local indexes = Q.after + 2
local _, stamp = now_ms()
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'retry_count', '0', 'finished_at', '0',
  'updated_at', stamp)
redis.call('ZREM', index_of(KEYS, ARGV, state, indexes, 5), id)
redis.call('ZADD', index_of(KEYS, ARGV, 'PENDING', indexes, 5), stamp, id)
enqueue(Q, lists_at(KEYS, Q.after).retry, 'retry', id, ARGV[4], ARGV[3], false)
local counter = 'requeued'
if state ~= 'DLQ' then counter = 'requeued_' .. string.lower(state) end
changed(KEYS[3], KEYS[2], id, state, 'PENDING', stamp, nil, count(KEYS[4], counter))
return {'ok', state}
