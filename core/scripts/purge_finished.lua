-- purge_finished: finished tasks past their retention, or beyond an index's size bound, are
-- deleted (hash, audit trail and index entries), oldest first, one bounded batch per call.
-- KEYS: 1 index of a terminal state, 2 all-tasks index, 3 counters
-- ARGV: 1 task key prefix, 2 retention ms (0 = keep regardless of age), 3 max entries to keep
--       ('' = no bound; 0 = keep none), 4 batch size, 5 history key suffix, 6 owner index key
--       prefix (each task's owner is learnt from its hash), 7 chunk summaries key suffix,
--       8 type index key prefix (each task's type is learnt from its hash)
-- Returns: number of tasks deleted
-- Events: none (a bulk expiry; the counter 'expired' moves)
local now = now_ms()
local batch = tonumber(ARGV[4])
local ids = {}
if tonumber(ARGV[2]) > 0 then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, batch)
end
local excess = 0
if ARGV[3] ~= '' then excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3]) end
if #ids == 0 and excess > 0 then
  ids = redis.call('ZRANGE', KEYS[1], 0, math.min(excess, batch) - 1)
end
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'owner', 'task_type')
  if f[1] and f[1] ~= '' then redis.call('ZREM', ARGV[6] .. f[1], id) end
  if f[2] and f[2] ~= '' then redis.call('ZREM', ARGV[8] .. f[2], id) end
  redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ARGV[5], ARGV[1] .. id .. ARGV[7])
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
if #ids > 0 then redis.call('HINCRBY', KEYS[3], 'expired', #ids) end
return #ids
