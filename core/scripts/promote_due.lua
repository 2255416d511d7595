-- promote_due: retries whose time has come move to their owner's retry list at their priority,
-- SCHEDULED -> PENDING; owners held until a time that has come may run again (_lib.lua
-- release_due_holds). The caller read the due ids and where each goes (every key is named in
-- KEYS); each is checked again here, so any number of schedulers may run at once.
-- KEYS: 1 scheduled set, 2 PENDING index, 3 events channel, 4 counters, 5.. the pending-work keys
--       (_lib.lua queues()), then (from Q.after) per id: its hash, its history, its retry list
-- ARGV: per id: the id, the owner and the level its retry list is of
-- Returns: number of tasks promoted
-- Events: SCHEDULED -> PENDING
local Q = queues(KEYS, 5)
local now, stamp = now_ms()
release_due_holds(Q, now)
local promoted = 0
for i = 1, #ARGV, 3 do
  local id, owner, level = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local first = Q.after + i - 1
  local key, history, list = KEYS[first], KEYS[first + 1], KEYS[first + 2]
  local due = redis.call('ZSCORE', KEYS[1], id)
  local f = redis.call('HMGET', key, 'state', 'priority', 'owner')
  -- Not due (any more): another scheduler took it, or it was cancelled or rescheduled meanwhile.
  -- Another place than the one read: left for the next round's read.
  if due and tonumber(due) <= now and (not f[1] or same_place(f[3], f[2], owner, level)) then
    redis.call('ZREM', KEYS[1], id)
    if f[1] == 'SCHEDULED' then
      redis.call('HSET', key, 'state', 'PENDING', 'due_at', '0', 'updated_at', stamp)
      enqueue(Q, list, 'retry', id, level, owner, false)
      redis.call('ZADD', KEYS[2], stamp, id)
      changed(history, KEYS[3], id, 'SCHEDULED', 'PENDING', stamp, nil, count(KEYS[4], 'promoted'))
      promoted = promoted + 1
    end
  end
end
return promoted
