-- delete_task: a task that is not running is removed with every trace of it.
-- KEYS: 1 task hash, 2 primary list, 3 retry list, 4 all-tasks index, 5 events channel,
--       6.. index of each state named in ARGV[2..]
-- ARGV: 1 id, 2.. state names, aligned with KEYS[6..]
-- Returns: {'ok', state} | {'wrong_state', 'ACTIVE'} | {'not_found'}
-- Events: state -> '' (deleted)
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'not_found'} end
if state == 'ACTIVE' then return {'wrong_state', state} end
if state == 'PENDING' then
  redis.call('LREM', KEYS[2], 0, id)
  redis.call('LREM', KEYS[3], 0, id)
end
redis.call('ZREM', index_of(state, 6, 2), id)
redis.call('ZREM', KEYS[4], id)
redis.call('DEL', KEYS[1])
publish(KEYS[5], id, state, '', now_ms())
return {'ok', state}
