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
--       6 consumer's stats, 7..17 the pending-work keys (_lib.lua queues())
-- ARGV: 1 task key prefix (the id is learnt here), 2 attempt token, 3 consumer id,
--       4 side preferred at the same level ('primary' | 'retry'), 5 the pending-work
--       prefix (queues()), 6.. the task fields to return with 'ok'
-- Returns: {status, id, side, fields}: status 'ok' | 'skip' (no longer PENDING)
--          | 'empty'; side 'primary' | 'retry' | 'again' (claimed by this very call before);
--          with 'ok', fields = the values of the fields ARGV 6.. names, as they stand after the
--          claim (read before its writes: of the fields it writes, only started_at may be named)
-- Events: PENDING -> ACTIVE (no audit entry: the hash tells it, see _lib.lua began_attempt)
local Q = queues(KEYS, ARGV, 7, 5)
-- A consumer claims one task at a time, so the first run's id is the last in its in-flight list.
-- Its attempt token alone is read first: the fields to return only when it is this call's.
local again = redis.call('LINDEX', KEYS[1], '-1')
if again and redis.call('HGET', ARGV[1] .. again, 'attempt') == ARGV[2] then
  local f = redis.call('HMGET', ARGV[1] .. again, 'state', unpack(ARGV, 6))
  if f[1] == 'ACTIVE' then return {'ok', again, 'again', {unpack(f, 2)}} end
end
local now, stamp = now_ms()
local id, side, owner = dequeue(Q, ARGV[4], now, KEYS[1])
if not id then
  redis.call('DEL', Q.wake)
  return {'empty', '', ''}
end
local key = ARGV[1] .. id
-- The state, the attempts so far and the fields to return, in one read before the writes.
local f = redis.call('HMGET', key, 'state', 'attempts', unpack(ARGV, 6))
if f[1] ~= 'PENDING' then
  redis.call('RPOP', KEYS[1])  -- dequeue moved it in flight: it is dropped
  return {'skip', id, side}
end
redis.call('HSET', key, 'state', 'ACTIVE', 'attempt', ARGV[2], 'consumer', ARGV[3],
  'started_at', stamp, 'updated_at', stamp, 'progress', '0', 'current_step', '',
  'attempts', (tonumber(f[2]) or 0) + 1)
redis.call('HINCRBY', Q.active, owner, '1')
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], stamp, id)
local counter = 'taken_' .. side
consumer_count(KEYS[6], counter)
changed(nil, KEYS[4], id, 'PENDING', 'ACTIVE', stamp, ARGV[3],
  count(KEYS[5], 'started') .. ',' .. count(KEYS[5], counter))
-- The fields as they stand now (see Returns: started_at is the only one named that changed).
local fields = {}
for i = 6, #ARGV do
  fields[i - 5] = ARGV[i] == 'started_at' and stamp or f[i - 3]
end
return {'ok', id, side, fields}
