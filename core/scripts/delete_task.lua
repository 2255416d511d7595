-- delete_task: a task that is not running is removed with every trace of it (its audit trail too).
-- KEYS: 1 task hash, 2 all-tasks index, 3 events channel, 4 history, 5 counters,
--       6 the task's chunk summaries, 7..16 the pending-work keys (_lib.lua queues()),
--       17.. index of each state named in ARGV[6..]
-- ARGV: 1 id, 2 owner index key prefix (the owner is learnt from the hash), 3 type index key
--       prefix (the type is learnt from the hash), 4 the states it is allowed in
--       (ACTIONS['delete'], comma-separated), 5 the pending-work prefix (queues()),
--       6.. state names, aligned with KEYS[17..]
-- Returns: {'ok', state} | {'wrong_state', state} (ACTIVE: it is running) | {'not_found'}
-- Events: state -> '' (deleted)
local Q = queues(KEYS, ARGV, 7, 5)
local id = ARGV[1]
local fields = redis.call('HMGET', KEYS[1], 'state', 'owner', 'task_type', 'priority')
local state, owner, task_type = fields[1], fields[2], fields[3]
if not state then return {'not_found'} end
if not one_of(ARGV[4], state) then return {'wrong_state', state} end
if state == 'PENDING' then withdraw(Q, id, level_of(fields[4]), owner or '') end
redis.call('ZREM', index_of(KEYS, ARGV, state, 17, 6), id)
if owner and owner ~= '' then redis.call('ZREM', ARGV[2] .. owner, id) end
if task_type and task_type ~= '' then redis.call('ZREM', ARGV[3] .. task_type, id) end
redis.call('ZREM', KEYS[2], id)
redis.call('DEL', KEYS[1], KEYS[4], KEYS[6])
local _, stamp = now_ms()
changed(nil, KEYS[3], id, state, '', stamp, nil, count(KEYS[5], 'deleted'))
return {'ok', state}
