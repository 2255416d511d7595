-- complete_task: a worker's successful attempt, ACTIVE -> COMPLETED, result stored, with the
-- model and token usage when the provider reported them.
-- The figures a completion moves beyond the state it counts (its tokens in the counters, its run
-- time, the throughput rings, its type's count) go into the tally as one line, added up by
-- fold_tally.lua before anyone reads them: one call instead of seven.
-- No audit entry is written: the hash tells it (finished_at, consumer; see _lib.lua began_attempt).
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 COMPLETED index, 5 events channel,
--       6 counters, 7 consumer's stats, 8 completions tally, 9..19 the pending-work keys
--       (_lib.lua queues(): its owner's running count and tokens today)
-- ARGV: 1 id, 2 attempt token, 3 result, 4 provider name, 5 model ('' = unknown),
--       6 prompt tokens, 7 completion tokens, 8 total tokens (0 = not reported), 9 consumer id
-- The errors of earlier attempts stay in the history; the task itself no longer carries one.
-- Returns: {'ok'} | {'stale', state} (another attempt owns the task: result refused) | {'not_found'}
-- Events: ACTIVE -> COMPLETED
local Q = queues(KEYS, 9)
local refused, f = check_attempt(KEYS[1], ARGV[2], 'started_at', 'task_type', 'owner', 'last_error',
  'error_type', 'rate_limits', 'rate_limited_at')
if refused then return refused end
local now, stamp = now_ms()
local id = ARGV[1]
local owner = f[5]
redis.call('HSET', KEYS[1], 'state', 'COMPLETED', 'result', ARGV[3], 'provider', ARGV[4],
  'model', ARGV[5], 'prompt_tokens', ARGV[6], 'completion_tokens', ARGV[7], 'total_tokens', ARGV[8],
  'progress', '100', 'attempt', '', 'finished_at', stamp, 'updated_at', stamp)
-- An earlier attempt's error and run of 429s go (only those set: a first attempt has none).
local stale = {}
for i, name in ipairs({'last_error', 'error_type', 'rate_limits', 'rate_limited_at'}) do
  if f[5 + i] and f[5 + i] ~= '' then stale[#stale + 1] = name end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('LREM', KEYS[2], 1, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], stamp, id)
local tokens = tonumber(ARGV[8])
if tokens > 0 then spend_tokens(Q, owner, tokens, now) end
left_active(Q, owner, now)
consumer_count(KEYS[7], 'completed')
-- fold_tally.lua reads the line: when, run time (ms), prompt and completion tokens, type.
redis.call('RPUSH', KEYS[8], stamp .. ' ' .. math.max(0, now - (tonumber(f[3]) or now)) .. ' ' ..
  ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. (f[4] or ''))
changed(nil, KEYS[5], id, 'ACTIVE', 'COMPLETED', stamp, ARGV[9], count(KEYS[6], 'completed'))
return {'ok'}
