-- save_chunk: the running attempt keeps one finished piece of a long input's map-reduce (a chunk
-- summary), so a later attempt redoes only what failed. Only the attempt that owns the task may
-- write, so a late duplicate can never recreate the hash of a task deleted meanwhile.
-- KEYS: 1 task hash, 2 the task's chunk hash
-- ARGV: 1 attempt token, 2 field, 3 value (JSON), 4 ttl ms (a safety net; the hash goes with the task)
-- Returns: {'ok'} | {'stale', state} | {'not_found'}
-- Events: none (no state change; progress is reported by set_progress)
local refused = check_attempt(KEYS[1], ARGV[1])
if refused then return refused end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {'ok'}
