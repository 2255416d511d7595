-- set_progress: the running attempt reports how far it got (0-100) and what it is doing; only
-- the attempt that owns the task may, so a stale duplicate cannot move another attempt's bar.
-- KEYS: 1 task hash, 2 events channel
-- ARGV: 1 id, 2 attempt token, 3 progress (0-100), 4 current step
-- Returns: {'ok'} | {'stale', state} | {'not_found'}
-- Events: a 'progress' event (no state change)
local refused = check_attempt(KEYS[1], ARGV[2])
if refused then return refused end
local now = now_ms()
redis.call('HSET', KEYS[1], 'progress', ARGV[3], 'current_step', ARGV[4], 'updated_at', now)
redis.call('PUBLISH', KEYS[2], cjson.encode({event = 'progress', task_id = ARGV[1], at = now,
  progress = tonumber(ARGV[3]), current_step = ARGV[4]}))
return {'ok'}
