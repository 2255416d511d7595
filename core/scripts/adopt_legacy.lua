-- adopt_legacy: ids left in the single pending lists of before priorities (issue 18) join their
-- owner's list at their priority (5 for a task stored without one), in their order, a bounded
-- batch per call; ids no longer PENDING (cancelled, deleted meanwhile) are dropped. The caller
-- read the heads of the old lists and where each id goes (every key named in KEYS); an id is
-- taken only while it is still at the head of its old list as read.
-- KEYS: 1 the old new-work list, 2 the old retry list, 3.. the pending-work keys (queues()),
--       then (from Q.after) per id: its hash, its owner's list at its level on its old list's side
-- ARGV: 1 how many of the ids are the new-work list's (the rest are the retry list's),
--       2.. per id: the id, its owner and its level
-- Returns: number of ids taken out of the old lists (adopted or dropped)
-- Events: none (no state changes)
local Q = queues(KEYS, 3)
local taken = 0
local stopped = {}
for i = 2, #ARGV, 3 do
  local n = (i - 2) / 3
  local side_n = n < tonumber(ARGV[1]) and 1 or 2
  local id, owner, level = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key, list = KEYS[Q.after + 2 * n], KEYS[Q.after + 2 * n + 1]
  if not stopped[side_n] then
    local f = redis.call('HMGET', key, 'state', 'priority', 'owner')
    if redis.call('LINDEX', KEYS[side_n], 0) ~= id or (f[1] and not same_place(f[3], f[2], owner, level)) then
      stopped[side_n] = true  -- taken by another scheduler, or not as read: the next call reads again
    else
      redis.call('LPOP', KEYS[side_n])
      if f[1] == 'PENDING' then enqueue(Q, list, SIDES[side_n], id, level, owner, false) end
      taken = taken + 1
    end
  end
end
return taken
