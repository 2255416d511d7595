-- fail_task: a failed attempt ends the task, ACTIVE -> FAILED (input rejected) or DLQ
-- (out of retries, or a provider problem an operator must fix).
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 index of the target state, 5 events,
--       6 history, 7 counters, 8 consumer's stats, 9 per-second throughput ring,
--       10 per-minute throughput ring, 11 per-type counters (the task's type is read from its hash),
--       12..22 the pending-work keys (_lib.lua queues(): its owner's running count)
-- ARGV: 1 id, 2 attempt token, 3 target state (FAILED | DLQ), 4 error message, 5 error type,
--       6 consumer id
-- Returns: {'ok'} | {'stale', state} | {'not_found'}
-- Events: ACTIVE -> FAILED | DLQ
local Q = queues(KEYS, 12)
local refused, f = check_attempt(KEYS[1], ARGV[2], 'task_type', 'owner')
if refused then return refused end
began_attempt(KEYS[6], KEYS[1])
local now, stamp = now_ms()
local id = ARGV[1]
local task_type, owner = f[3], f[4]
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'attempt', '', 'last_error', ARGV[4],
  'error_type', ARGV[5], 'finished_at', stamp, 'updated_at', stamp)
-- A run of 429s ends with the task: a re-driven task starts a new one.
redis.call('HDEL', KEYS[1], 'rate_limits', 'rate_limited_at')
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], stamp, id)
left_active(Q, owner, now)
consumer_count(KEYS[8], 'failed')
finished(KEYS[9], KEYS[10], now, 'failed')
local counter = 'failed'
if ARGV[3] == 'DLQ' then counter = 'dead' end
count_type(KEYS[11], task_type, counter)
changed(KEYS[6], KEYS[5], id, 'ACTIVE', ARGV[3], stamp, ARGV[6], count(KEYS[7], counter), ARGV[4], ARGV[5])
return {'ok'}
