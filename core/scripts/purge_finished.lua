-- purge_finished: finished tasks past their retention, or beyond an index's size bound, are
-- deleted (hash and index entries), oldest first, one bounded batch per call.
-- KEYS: 1 index of a terminal state, 2 all-tasks index
-- ARGV: 1 task key prefix, 2 retention ms (0 = keep regardless of age), 3 max entries to keep
--       (0 = no bound), 4 batch size
-- Returns: number of tasks deleted
local now = now_ms()
local batch = tonumber(ARGV[4])
local ids = {}
if tonumber(ARGV[2]) > 0 then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, batch)
end
local excess = tonumber(ARGV[3]) > 0 and (redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])) or 0
if #ids == 0 and excess > 0 then
  ids = redis.call('ZRANGE', KEYS[1], 0, math.min(excess, batch) - 1)
end
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
