-- claim_task: a consumer takes the next task, PENDING -> ACTIVE, under a fresh attempt token.
-- The id moves into the consumer's in-flight list in the same step (LMOVE), so a crash at any
-- instant leaves it either in a pending list or in flight, where the reaper finds it.
-- When ARGV[4] is set, the id was already moved there by a blocking BLMOVE and is claimed as is;
-- with both lists empty, an id a BLMOVE moved there unanswered is claimed (see below).
-- The same call run again (its reply was lost and the client sent it again, same token) gets the
-- same answer: the task it claimed the first time, which would otherwise sit ACTIVE in flight
-- with no attempt running until its lease ran out.
-- Each claim counts the list it took the id from, globally (counters `taken_primary`,
-- `taken_retry`: the flow diagram's edges into Active) and in the consumer's own stats (the
-- workers table). A moved id came from the primary list: the idle consumer's BLMOVE waits there.
-- KEYS: 1 preferred list, 2 other list, 3 in-flight list, 4 PENDING index, 5 ACTIVE index,
--       6 retry list (its length is reported), 7 events channel, 8 counters, 9 consumer's stats
-- ARGV: 1 task key prefix (the id is learnt here), 2 attempt token, 3 consumer id, 4 moved id or '',
--       5 history key suffix, 6.. the task fields to return with 'ok' (what the worker needs)
-- Returns: {status, id, retry_len, source, fields}: status 'ok' | 'skip' (deleted or no longer
--          PENDING) | 'empty'; source 'preferred' | 'other' | 'moved' (which list the id came
--          from) | 'again' (claimed by this very call before); with 'ok', fields = the values of
--          the fields ARGV 6.. names
-- Events: PENDING -> ACTIVE
local function claimed_by_this_call(candidate)
  local state, attempt = unpack(redis.call('HMGET', ARGV[1] .. candidate, 'state', 'attempt'))
  return state == 'ACTIVE' and attempt == ARGV[2]
end
-- A consumer claims one task at a time, so the first run's id is the last in its in-flight list.
local again = ARGV[4] ~= '' and ARGV[4] or redis.call('LINDEX', KEYS[3], -1)
if again and claimed_by_this_call(again) then
  local key = ARGV[1] .. again
  return {'ok', again, redis.call('LLEN', KEYS[6]), 'again', redis.call('HMGET', key, unpack(ARGV, 6))}
end
local id = ARGV[4]
local source = 'moved'
if id == '' then
  source = 'preferred'
  id = redis.call('LMOVE', KEYS[1], KEYS[3], 'LEFT', 'RIGHT')
  if not id then
    source = 'other'
    id = redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT')
  end
  if not id then
    -- Both lists empty: a PENDING id in our own in-flight list was moved there by a BLMOVE whose
    -- reply was lost (Redis stopped before answering; the client's retry moved nothing or
    -- another id). Claimed now, it cannot stay stranded there while this consumer lives.
    for _, candidate in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
      if redis.call('HGET', ARGV[1] .. candidate, 'state') == 'PENDING' then
        id, source = candidate, 'moved'
        break
      end
    end
  end
end
local retry_len = redis.call('LLEN', KEYS[6])
if not id then return {'empty', '', retry_len, ''} end
local key = ARGV[1] .. id
if redis.call('HGET', key, 'state') ~= 'PENDING' then
  redis.call('LREM', KEYS[3], -1, id)
  return {'skip', id, retry_len, source}
end
local now = now_ms()
redis.call('HSET', key, 'state', 'ACTIVE', 'attempt', ARGV[2], 'consumer', ARGV[3],
  'started_at', now, 'updated_at', now, 'progress', 0, 'current_step', '')
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('ZREM', KEYS[4], id)
redis.call('ZADD', KEYS[5], now, id)
local from_list = 'primary'
if (source == 'preferred' and KEYS[1] == KEYS[6]) or (source == 'other' and KEYS[2] == KEYS[6]) then
  from_list = 'retry'
end
redis.call('HINCRBY', KEYS[9], 'taken_' .. from_list, 1)
redis.call('EXPIRE', KEYS[9], CONSUMER_STATS_TTL)
changed({id = id, from = 'PENDING', to = 'ACTIVE', at = now, channel = KEYS[7],
  history = key .. ARGV[5], counters = KEYS[8], counter = 'started', also = 'taken_' .. from_list,
  worker = ARGV[3]})
return {'ok', id, retry_len, source, redis.call('HMGET', key, unpack(ARGV, 6))}
