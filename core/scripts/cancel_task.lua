-- cancel_task: a task is withdrawn, PENDING | SCHEDULED | ACTIVE -> CANCELLED, at once.
-- A PENDING task leaves its owner's list. An ACTIVE task leaves its consumer's in-flight list
-- here (so the consumer's count stays right), stops counting against its owner's concurrency,
-- and loses its attempt token, so the worker's late report is refused as stale.
-- KEYS: 1 task hash, 2 scheduled set, 3 PENDING index, 4 CANCELLED index, 5 events channel,
--       6 ACTIVE index, 7 history, 8 counters, 9.. the pending-work keys (_lib.lua queues()),
--       then (from Q.after) the task's two lists (lists_at()) and the in-flight list of the
--       consumer the caller read in its hash
-- ARGV: 1 id, 2 that consumer ('' none), 3 the states it is allowed from (ACTIONS['cancel'],
--       comma-separated; each has its own clean-up below), 4..5 the owner and level the lists
--       are of
-- Returns: {'ok', from_state} | {'wrong_state', state} | {'not_found'} | {'moved'} (the hash
--          no longer names those: claimed meanwhile; read again)
-- Events: PENDING | SCHEDULED | ACTIVE -> CANCELLED
local Q = queues(KEYS, 9)
local id = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'state', 'consumer', 'priority', 'owner')
local state = f[1]
if not state then return {'not_found'} end
if not one_of(ARGV[3], state) then return {'wrong_state', state} end
if not same_place(f[4], f[3], ARGV[4], ARGV[5]) or (state == 'ACTIVE' and f[2] ~= ARGV[2]) then
  return {'moved'}
end
local now, stamp = now_ms()
if state == 'PENDING' then
  withdraw(Q, lists_at(KEYS, Q.after), id, ARGV[5], ARGV[4])
  redis.call('ZREM', KEYS[3], id)
elseif state == 'SCHEDULED' then
  redis.call('ZREM', KEYS[2], id)
elseif state == 'ACTIVE' then
  began_attempt(KEYS[7], KEYS[1])
  redis.call('LREM', KEYS[Q.after + 2], 0, id)
  redis.call('ZREM', KEYS[6], id)
  left_active(Q, f[4], now)
else
  return {'wrong_state', state}
end
redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'due_at', '0', 'attempt', '', 'finished_at', stamp,
  'updated_at', stamp)
redis.call('ZADD', KEYS[4], stamp, id)
changed(KEYS[7], KEYS[5], id, state, 'CANCELLED', stamp, nil, count(KEYS[8], 'cancelled'))
return {'ok', state}
