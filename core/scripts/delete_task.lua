-- delete_task: a task that is not running is removed with every trace of it (its audit trail too).
-- KEYS: 1 task hash, 2 all-tasks index, 3 events channel, 4 history, 5 counters,
--       6 the task's chunk summaries, 7.. the pending-work keys (_lib.lua queues()), then (from
--       Q.after) the task's two lists (lists_at()), its owner's index, its type's index, and
--       the index of each state named in ARGV[8..]
-- ARGV: 1 id, 2 the owner and 3 the type the caller read in the hash (the indexes are theirs),
--       4 the states it is allowed in (ACTIONS['delete'], comma-separated), 5 the level the
--       lists are of, 6.. state names, aligned with the state indexes in KEYS
-- Returns: {'ok', state} | {'wrong_state', state} (ACTIVE: it is running) | {'not_found'}
--          | {'moved'} (the hash's owner, type or level are not those named: read again)
-- Events: state -> '' (deleted)
local Q = queues(KEYS, 7)
local id = ARGV[1]
local fields = redis.call('HMGET', KEYS[1], 'state', 'owner', 'task_type', 'priority')
local state, owner, task_type = fields[1], fields[2], fields[3]
if not state then return {'not_found'} end
if not one_of(ARGV[4], state) then return {'wrong_state', state} end
if not same_place(owner, fields[4], ARGV[2], ARGV[5]) or (task_type or '') ~= ARGV[3] then return {'moved'} end
if state == 'PENDING' then withdraw(Q, lists_at(KEYS, Q.after), id, ARGV[5], ARGV[2]) end
redis.call('ZREM', index_of(KEYS, ARGV, state, Q.after + 4, 6), id)
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[Q.after + 2], id) end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[Q.after + 3], id) end
redis.call('ZREM', KEYS[2], id)
redis.call('DEL', KEYS[1], KEYS[4], KEYS[6])
local _, stamp = now_ms()
changed(nil, KEYS[3], id, state, '', stamp, nil, count(KEYS[5], 'deleted'))
return {'ok', state}
