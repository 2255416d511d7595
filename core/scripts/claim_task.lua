-- claim_task: a consumer takes the next task, PENDING -> ACTIVE, under a fresh attempt token:
-- the most urgent level first (strict), owners in turn within a level, FIFO within an owner;
-- owners over a per-key limit are held (see _lib.lua, "Pending work"). At the same level of both
-- sides, ARGV[3] (the consumer's draw, ~70/30) picks new work or a retry.
-- Every key it touches is named in KEYS: the caller names the list it looked at (the turn a
-- previous reply told it of, _lib.lua looks()) and the hash of that list's head as it read it.
-- The claim takes that id only while it is still the head of the turn due now; otherwise it
-- replies 'moved' with the turns due now, and the caller reads again.
-- The id moves from its list into the consumer's in-flight list in this one step, so a crash at
-- any instant leaves it either pending or in flight, where the reaper finds it.
-- The same call run again (its reply was lost and the client sent it again, same token) gets the
-- same answer: the task it claimed the first time, which would otherwise sit ACTIVE in flight
-- with no attempt running until its lease ran out.
-- Each claim counts the side it took from, globally (counters `taken_primary`, `taken_retry`:
-- the flow diagram's edges into Active) and in the consumer's own stats (the workers table).
-- With nothing to take, the wake-up marks are cleared: they were all for work already taken.
-- KEYS: 1 in-flight list, 2 PENDING index, 3 ACTIVE index, 4 events channel, 5 counters,
--       6 consumer's stats, 7..17 the pending-work keys (_lib.lua queues()), 18 the list looked
--       at, 19 the hash of the id read at its head (both untouched without an id: ARGV[5] '')
-- ARGV: 1 attempt token, 2 consumer id, 3 side preferred at the same level ('primary' |
--       'retry'), 4 the turn looked at (side, a space, member; '' none), 5 the id read at its
--       list's head ('' none), 6.. the task fields to return with 'ok'
-- Returns: {status, id, side, fields, looks}: status 'ok' | 'skip' (no longer PENDING) | 'empty'
--          | 'moved' (not the head of the turn due now); side 'primary' | 'retry' | 'again'
--          (claimed by this very call before); with 'ok', fields = the values of the fields ARGV
--          6.. names, as they stand after the claim (read before its writes: of the fields it
--          writes, only started_at may be named); looks = the turns due next (_lib.lua looks()),
--          {} with 'again' and 'empty'
-- Events: PENDING -> ACTIVE (no audit entry: the hash tells it, see _lib.lua began_attempt)
local Q = queues(KEYS, 7)
local list, key, look_id = KEYS[Q.after], KEYS[Q.after + 1], ARGV[5]
-- The looked-at task's attempt and state (a resend's answer), the attempts so far and the
-- fields to return, in one read before the writes.
local f = {}
if look_id ~= '' then
  f = redis.call('HMGET', key, 'attempt', 'state', 'attempts', unpack(ARGV, 6))
  if f[1] == ARGV[1] and f[2] == 'ACTIVE' then return {'ok', look_id, 'again', {unpack(f, 4)}, {}} end
end
local now, stamp = now_ms()
local side, pm, pl, ps, rm, rl, rs = next_turn(Q, ARGV[3], now)
if not side then
  redis.call('DEL', Q.wake)
  return {'empty', '', '', {}, {}}
end
local member, level, shared = pm, pl, ps
if side == 'retry' then member, level, shared = rm, rl, rs end
if side .. ' ' .. member ~= ARGV[4] then return {'moved', '', '', {}, looks(pm, pl, rm, rl)} end
local id = redis.call('LMOVE', list, KEYS[1], 'LEFT', 'RIGHT')
local owner = string.sub(member, 2)
if id == look_id then
  -- The side's head after this turn (unchanged when its owner keeps the turn).
  if turn_taken(Q, side, member, level, shared, owner, list) then
    if side == 'primary' then pm, pl = head_of(Q, side) else rm, rl = head_of(Q, side) end
  end
else
  if id then
    redis.call('LMOVE', KEYS[1], list, 'RIGHT', 'LEFT')  -- another id: put back, in its place
  else
    redis.call('ZREM', Q.ready[side], member)  -- a turn kept for a list emptied since
    if side == 'primary' then pm, pl = head_of(Q, side) else rm, rl = head_of(Q, side) end
  end
  return {'moved', '', '', {}, looks(pm, pl, rm, rl)}
end
if f[2] ~= 'PENDING' then
  redis.call('RPOP', KEYS[1])  -- moved in flight above: it is dropped
  return {'skip', id, side, {}, looks(pm, pl, rm, rl)}
end
redis.call('HSET', key, 'state', 'ACTIVE', 'attempt', ARGV[1], 'consumer', ARGV[2],
  'started_at', stamp, 'updated_at', stamp, 'progress', '0', 'current_step', '',
  'attempts', (tonumber(f[3]) or 0) + 1)
redis.call('HINCRBY', Q.active, owner, '1')
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], stamp, id)
local counter = 'taken_' .. side
consumer_count(KEYS[6], counter)
changed(nil, KEYS[4], id, 'PENDING', 'ACTIVE', stamp, ARGV[2],
  count(KEYS[5], 'started') .. ',' .. count(KEYS[5], counter))
-- The fields as they stand now (see Returns: started_at is the only one named that changed).
local fields = {}
for i = 6, #ARGV do
  fields[i - 5] = ARGV[i] == 'started_at' and stamp or f[i - 2]
end
return {'ok', id, side, fields, looks(pm, pl, rm, rl)}
