-- complete_task: a worker's successful attempt, ACTIVE -> COMPLETED, result stored.
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 COMPLETED index, 5 events channel
-- ARGV: 1 id, 2 attempt token, 3 result, 4 provider name
-- Returns: {'ok'} | {'stale', state} (another attempt owns the task: result refused) | {'not_found'}
-- Events: ACTIVE -> COMPLETED
local refused = check_attempt(KEYS[1], ARGV[2])
if refused then return refused end
local now = now_ms()
local id = ARGV[1]
redis.call('HSET', KEYS[1], 'state', 'COMPLETED', 'result', ARGV[3], 'provider', ARGV[4],
  'attempt', '', 'finished_at', now, 'updated_at', now)
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], now, id)
publish(KEYS[5], id, 'ACTIVE', 'COMPLETED', now)
return {'ok'}
