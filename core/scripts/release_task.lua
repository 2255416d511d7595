-- release_task: an attempt given back unspent goes to the head of the primary list,
-- ACTIVE -> PENDING, spending no retry: the breaker refused the call, the dispatch failed, or the
-- consumer is shutting down. The task waits in the queue, in its place.
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 PENDING index, 5 primary list, 6 events,
--       7 history, 8 counters
-- ARGV: 1 id, 2 attempt token, 3 reason, 4 error type, 5 consumer id
-- Returns: {'ok'} | {'stale', state} | {'not_found'}
-- Events: ACTIVE -> PENDING
local refused = check_attempt(KEYS[1], ARGV[2])
if refused then return refused end
local now = now_ms()
local id = ARGV[1]
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'attempt', '', 'last_error', ARGV[3],
  'error_type', ARGV[4], 'updated_at', now)
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], now, id)
redis.call('LPUSH', KEYS[5], id)
changed({id = id, from = 'ACTIVE', to = 'PENDING', at = now, channel = KEYS[6], history = KEYS[7],
  counters = KEYS[8], counter = 'released', error = ARGV[3], error_type = ARGV[4], worker = ARGV[5]})
return {'ok'}
