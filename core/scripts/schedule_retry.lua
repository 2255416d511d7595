-- schedule_retry: a failed attempt waits for its retry, ACTIVE -> SCHEDULED, spending one retry
-- (or none, when the provider only asked us to wait: a rate limit).
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 scheduled set, 5 events channel,
--       6 history, 7 counters, 8 consumer's stats, 9 per-type counters (the task's type is read
--       from its hash), 10..20 the pending-work keys (_lib.lua queues(): its owner's running count)
-- ARGV: 1 id, 2 attempt token, 3 delay ms, 4 error message, 5 error type, 6 consumer id,
--       7 retries spent: 1 | 0, 8 the task's run of provider 429s: 'grow' (one more; its start
--       is kept in rate_limited_at) | 'keep' (the fleet's own limit) | 'reset' (any other failure)
-- Returns: {'ok', retry_count, due_at} | {'stale', state} | {'not_found'}
-- Events: ACTIVE -> SCHEDULED
local Q = queues(KEYS, 10)
local refused, f = check_attempt(KEYS[1], ARGV[2], 'task_type', 'owner')
if refused then return refused end
began_attempt(KEYS[6], KEYS[1])
local now, stamp = now_ms()
local id = ARGV[1]
local due = now + tonumber(ARGV[3])
local spent = tonumber(ARGV[7])
local task_type, owner = f[3], f[4]
local retries = redis.call('HINCRBY', KEYS[1], 'retry_count', spent)
redis.call('HSET', KEYS[1], 'state', 'SCHEDULED', 'due_at', due, 'attempt', '',
  'last_error', ARGV[4], 'error_type', ARGV[5], 'updated_at', stamp)
if ARGV[8] == 'grow' then
  redis.call('HINCRBY', KEYS[1], 'rate_limits', 1)
  redis.call('HSETNX', KEYS[1], 'rate_limited_at', stamp)
elseif ARGV[8] ~= 'keep' then
  redis.call('HDEL', KEYS[1], 'rate_limits', 'rate_limited_at')
end
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], due, id)
left_active(Q, owner, now)
consumer_count(KEYS[8], 'failed')
local counter = spent == 1 and 'retried' or 'postponed'
count_type(KEYS[9], task_type, counter)
changed(KEYS[6], KEYS[5], id, 'ACTIVE', 'SCHEDULED', stamp, ARGV[6], count(KEYS[7], counter), ARGV[4], ARGV[5])
return {'ok', retries, due}
