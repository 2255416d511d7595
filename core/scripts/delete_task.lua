-- delete_task: a task that is not running is removed with every trace of it (its audit trail too).
-- KEYS: 1 task hash, 2 primary list, 3 retry list, 4 all-tasks index, 5 events channel,
--       6 history, 7 counters, 8.. index of each state named in ARGV[5..],
--       last: the task's chunk summaries (after the indexes)
-- ARGV: 1 id, 2 owner index key prefix (the owner is learnt from the hash), 3 type index key
--       prefix (the type is learnt from the hash), 4 the states it is allowed in
--       (ACTIONS['delete'], comma-separated), 5.. state names, aligned with KEYS[8..]
-- Returns: {'ok', state} | {'wrong_state', state} (ACTIVE: it is running) | {'not_found'}
-- Events: state -> '' (deleted)
local id = ARGV[1]
local fields = redis.call('HMGET', KEYS[1], 'state', 'owner', 'task_type')
local state, owner, task_type = fields[1], fields[2], fields[3]
if not state then return {'not_found'} end
if not one_of(ARGV[4], state) then return {'wrong_state', state} end
if state == 'PENDING' then
  redis.call('LREM', KEYS[2], 0, id)
  redis.call('LREM', KEYS[3], 0, id)
end
redis.call('ZREM', index_of(state, 8, 5), id)
if owner and owner ~= '' then redis.call('ZREM', ARGV[2] .. owner, id) end
if task_type and task_type ~= '' then redis.call('ZREM', ARGV[3] .. task_type, id) end
redis.call('ZREM', KEYS[4], id)
redis.call('DEL', KEYS[1], KEYS[6], KEYS[#KEYS])
changed({id = id, from = state, to = '', at = now_ms(), channel = KEYS[5], counters = KEYS[7],
  counter = 'deleted'})
return {'ok', state}
