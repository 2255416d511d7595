-- claim_task: a consumer takes the next task, PENDING -> ACTIVE, under a fresh attempt token:
-- the most urgent level first (strict), owners in turn within a level, FIFO within an owner;
-- owners over a per-key limit are held (see _lib.lua, "Pending work"). At the same level of both
-- sides, ARGV[4] (the consumer's draw, ~70/30) picks new work or a retry.
-- The id moves from its list into the consumer's in-flight list in this one step, so a crash at
-- any instant leaves it either pending or in flight, where the reaper finds it.
-- The same call run again (its reply was lost and the client sent it again, same token) gets the
-- same answer: the task it claimed the first time, which would otherwise sit ACTIVE in flight
-- with no attempt running until its lease ran out.
-- Each claim counts the side it took from, globally (counters `taken_primary`, `taken_retry`:
-- the flow diagram's edges into Active) and in the consumer's own stats (the workers table).
-- With nothing to take, the wake-up marks are cleared: they were all for work already taken.
-- KEYS: 1 in-flight list, 2 PENDING index, 3 ACTIVE index, 4 events channel, 5 counters,
--       6 consumer's stats, 7..15 the pending-work keys (_lib.lua queues())
-- ARGV: 1 task key prefix (the id is learnt here), 2 attempt token, 3 consumer id,
--       4 side preferred at the same level ('primary' | 'retry'), 5 history key suffix,
--       6..7 the pending-work prefixes (queues()), 8.. the task fields to return with 'ok'
-- Returns: {status, id, retry backlog, side, fields}: status 'ok' | 'skip' (no longer PENDING)
--          | 'empty'; side 'primary' | 'retry' | 'again' (claimed by this very call before);
--          with 'ok', fields = the values of the fields ARGV 8.. names
-- Events: PENDING -> ACTIVE
local Q = queues(7, 6)
local function retry_backlog() return tonumber(redis.call('HGET', Q.depth, 'retry') or 0) end
-- A consumer claims one task at a time, so the first run's id is the last in its in-flight list.
local again = redis.call('LINDEX', KEYS[1], -1)
if again then
  local state, attempt = unpack(redis.call('HMGET', ARGV[1] .. again, 'state', 'attempt'))
  if state == 'ACTIVE' and attempt == ARGV[2] then
    return {'ok', again, retry_backlog(), 'again', redis.call('HMGET', ARGV[1] .. again, unpack(ARGV, 8))}
  end
end
local now = now_ms()
local id, side, owner = dequeue(Q, ARGV[4], now)
if not id then
  redis.call('DEL', Q.wake)
  return {'empty', '', retry_backlog(), ''}
end
local key = ARGV[1] .. id
if redis.call('HGET', key, 'state') ~= 'PENDING' then
  return {'skip', id, retry_backlog(), side}
end
redis.call('RPUSH', KEYS[1], id)
redis.call('HSET', key, 'state', 'ACTIVE', 'attempt', ARGV[2], 'consumer', ARGV[3],
  'started_at', now, 'updated_at', now, 'progress', 0, 'current_step', '')
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HINCRBY', Q.active, owner, 1)
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('HINCRBY', KEYS[6], 'taken_' .. side, 1)
redis.call('EXPIRE', KEYS[6], CONSUMER_STATS_TTL)
changed({id = id, from = 'PENDING', to = 'ACTIVE', at = now, channel = KEYS[4],
  history = key .. ARGV[5], counters = KEYS[5], counter = 'started', also = 'taken_' .. side,
  worker = ARGV[3]})
return {'ok', id, retry_backlog(), side, redis.call('HMGET', key, unpack(ARGV, 8))}
