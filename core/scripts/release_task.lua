-- release_task: an attempt given back unspent goes to the head of its owner's new-work list at
-- its priority, ACTIVE -> PENDING, spending no retry: the breaker refused the call, the dispatch
-- failed, or the consumer is shutting down. The task waits in the queue, in its place.
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 PENDING index, 5 events, 6 history,
--       7 counters, 8.. the pending-work keys (_lib.lua queues()), then (from Q.after) the
--       task's two lists (lists_at())
-- ARGV: 1 id, 2 attempt token, 3 reason, 4 error type, 5 consumer id, 6..7 the owner and level
--       the lists are of
-- Returns: {'ok'} | {'stale', state} | {'not_found'} | {'moved'} (read the owner and level again)
-- Events: ACTIVE -> PENDING
local Q = queues(KEYS, 8)
local refused, f = check_attempt(KEYS[1], ARGV[2], 'priority', 'owner')
if refused then return refused end
if not same_place(f[4], f[3], ARGV[6], ARGV[7]) then return {'moved'} end
began_attempt(KEYS[6], KEYS[1])
local now, stamp = now_ms()
local id = ARGV[1]
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'attempt', '', 'last_error', ARGV[3],
  'error_type', ARGV[4], 'updated_at', stamp)
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], stamp, id)
enqueue(Q, lists_at(KEYS, Q.after).primary, 'primary', id, ARGV[7], ARGV[6], true)
left_active(Q, f[4], now)
changed(KEYS[6], KEYS[5], id, 'ACTIVE', 'PENDING', stamp, ARGV[5], count(KEYS[7], 'released'), ARGV[3], ARGV[4])
return {'ok'}
