-- recover_task: an orphan (its consumer's heartbeat expired, or it outlived its lease) goes back
-- to its owner's retry list at its priority. A recovered ACTIVE attempt counts as a retry (so a
-- task that kills its worker every time ends in the DLQ); an id that was in flight but never
-- claimed (left by a consumer of before issue 18) does not.
-- KEYS: 1 task hash, 2 in-flight list, 3 ACTIVE index, 4 PENDING index, 5 DLQ index,
--       6 events channel, 7 history, 8 counters, 9 stats of the consumer that held it,
--       10 per-second throughput ring, 11 per-minute throughput ring, 12 per-type counters
--       (the task's type is read from its hash), 13.. the pending-work keys (_lib.lua queues()),
--       then (from Q.after) the task's two lists (lists_at())
-- ARGV: 1 id, 2 expected attempt token ('' = whatever attempt the dead consumer held), 3 reason,
--       4 consumer that held it (an ACTIVE task claimed by another consumer is left alone),
--       5..6 the owner and level the lists are of
-- Returns: {'requeued'} | {'dead'} | {'dropped'} (nothing left to recover) | {'stale', state}
--          | {'moved'} (the hash's owner or level are not those of the lists: read again)
-- Events: ACTIVE -> PENDING | DLQ
local Q = queues(KEYS, 13)
local id = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'retry_count', 'max_retries', 'consumer',
  'task_type', 'priority', 'owner')
if ARGV[2] ~= '' and (f[1] ~= 'ACTIVE' or f[2] ~= ARGV[2]) then return {'stale', f[1] or ''} end
if f[1] and not same_place(f[8], f[7], ARGV[5], ARGV[6]) then return {'moved'} end
local lists = lists_at(KEYS, Q.after)
local removed = redis.call('LREM', KEYS[2], 0, id)
local now, stamp = now_ms()
local level, owner = level_of(f[7]), f[8] or ''
if f[1] == 'PENDING' then
  -- Requeue only an id this call took out of flight: a second reaper must not push a duplicate.
  if removed == 0 then return {'dropped'} end
  enqueue(Q, lists.retry, 'retry', id, level, owner, false)
  return {'requeued'}
end
if f[1] ~= 'ACTIVE' or f[5] ~= ARGV[4] then return {'dropped'} end
began_attempt(KEYS[7], KEYS[1])
redis.call('ZREM', KEYS[3], id)
left_active(Q, owner, now)
consumer_count(KEYS[9], 'failed')
-- The attempt was lost with its worker: recorded and announced as ending in state `to`.
local function lost(to, counter)
  count_type(KEYS[12], f[6], counter)
  changed(KEYS[7], KEYS[6], id, 'ACTIVE', to, stamp, ARGV[4], count(KEYS[8], counter), ARGV[3], 'worker_lost')
end
if tonumber(f[3]) >= tonumber(f[4]) then
  redis.call('HSET', KEYS[1], 'state', 'DLQ', 'attempt', '', 'last_error', ARGV[3],
    'error_type', 'worker_lost', 'finished_at', stamp, 'updated_at', stamp)
  redis.call('ZADD', KEYS[5], stamp, id)
  finished(KEYS[10], KEYS[11], now, 'failed')
  lost('DLQ', 'dead')
  return {'dead'}
end
redis.call('HINCRBY', KEYS[1], 'retry_count', '1')
redis.call('HSET', KEYS[1], 'state', 'PENDING', 'attempt', '', 'last_error', ARGV[3],
  'error_type', 'worker_lost', 'updated_at', stamp)
enqueue(Q, lists.retry, 'retry', id, level, owner, false)
redis.call('ZADD', KEYS[4], stamp, id)
lost('PENDING', 'recovered')
return {'requeued'}
