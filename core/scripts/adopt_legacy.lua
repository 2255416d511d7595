-- adopt_legacy: ids left in the single pending lists of before priorities (issue 18) join their
-- owner's list at their priority (5 for a task stored without one), in their order, a bounded
-- batch per call; ids no longer PENDING (cancelled, deleted meanwhile) are dropped.
-- KEYS: 1 the old new-work list, 2 the old retry list, 3..12 the pending-work keys (queues())
-- ARGV: 1 task key prefix, 2 batch size, 3 the pending-work prefix (queues())
-- Returns: number of ids taken out of the old lists (adopted or dropped)
-- Events: none (no state changes)
local Q = queues(KEYS, ARGV, 3, 3)
local taken = 0
for n, side in ipairs(SIDES) do
  for _, id in ipairs(redis.call('LPOP', KEYS[n], tonumber(ARGV[2])) or {}) do
    local f = redis.call('HMGET', ARGV[1] .. id, 'state', 'priority', 'owner')
    if f[1] == 'PENDING' then enqueue(Q, side, id, level_of(f[2]), f[3] or '', false) end
    taken = taken + 1
  end
end
return taken
