-- create_task: a new task enters PENDING at the tail of the primary list.
-- KEYS: 1 task hash, 2 primary list, 3 PENDING index, 4 all-tasks index, 5 events channel
-- ARGV: 1 id, 2.. field/value pairs of the task hash (timestamps are set here)
-- Returns: {'ok', created_at} | {'exists'}
-- Events: none -> PENDING
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local now = now_ms()
local id = ARGV[1]
redis.call('HSET', KEYS[1], 'created_at', now, 'updated_at', now, unpack(ARGV, 2))
redis.call('RPUSH', KEYS[2], id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('ZADD', KEYS[4], now, id)
publish(KEYS[5], id, '', 'PENDING', now)
return {'ok', now}
