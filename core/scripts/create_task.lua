-- create_task: new tasks enter PENDING at the tail of their owner's new-work list at their
-- priority, all of them in one step (a single submit is a batch of one). With an idempotency
-- key, a key already used within its retention returns the tasks it created instead, so
-- concurrent duplicates create nothing twice.
-- KEYS: 1 PENDING index, 2 all-tasks index, 3 events channel, 4 counters,
--       5 idempotency key (written and read only when ARGV[2] says one was given), 6 the owner's
--       index (untouched for owner '': the API runs without keys), 7 per-type counters,
--       8..18 the pending-work keys (_lib.lua queues()), then for each task (i from 0): 19+3i
--       its hash, 20+3i its type's index (untouched for a task without a type: counted
--       globally only), 21+3i its owner's new-work list at its priority.
--       No key is ever '' (a Redis Cluster routes by every key). No audit entry is written: the
--       hash's created_at tells it (see _lib.lua began_attempt).
-- ARGV: 1 idempotency retention ms, 2 '1' when an idempotency key was given, else '',
--       3.. per task: n, the number of values that follow,
--       then its hash fields as n values name, value, name, value…, the first four `id`, `owner`,
--       `priority`, `task_type` in this order (timestamps are set here). Flat, not JSON: no
--       decoding, and HSET takes them as they are.
-- Returns: {'ok', created_at} | {'exists', id} | {'duplicate', JSON array of the ids first created}
-- Events: none -> PENDING, per task
local Q = queues(KEYS, 8)
local idem = ARGV[2] ~= '' and KEYS[5]
if idem then
  local seen = redis.call('GET', idem)
  if seen then
    local ids = cjson.decode(seen)
    -- A key whose tasks were deleted meanwhile is free again.
    if redis.call('ZSCORE', KEYS[2], ids[1]) then
      -- Written again (same TTL), so that a WAIT after this replay also covers the first submit,
      -- which an earlier WAIT may not have seen replicated (REDIS_MIN_REPLICAS_ACK).
      local ttl = redis.call('PTTL', idem)
      if ttl > 0 then redis.call('PEXPIRE', idem, ttl) end
      return {'duplicate', seen}
    end
  end
end
-- Where each task's values start in ARGV. No task may exist already: every stored task is in the
-- all-tasks index (delete and purge take it out with the hash), so entering it there is the check.
local _, stamp = now_ms()
local starts, ids = {}, {}
local i = 3
while i <= #ARGV do
  local id = ARGV[i + 2]
  if redis.call('ZADD', KEYS[2], 'NX', stamp, id) == 0 then
    if #ids > 0 then redis.call('ZREM', KEYS[2], unpack(ids)) end
    return {'exists', id}
  end
  starts[#starts + 1], ids[#ids + 1] = i + 1, id
  i = i + 1 + tonumber(ARGV[i])
end
for n, s in ipairs(starts) do
  local id, owner, level, task_type = ids[n], ARGV[s + 3], level_of(ARGV[s + 5]), ARGV[s + 7]
  local first = Q.after + 3 * (n - 1)
  local key, type_index, list = KEYS[first], KEYS[first + 1], KEYS[first + 2]
  redis.call('HSET', key, 'created_at', stamp, 'updated_at', stamp, unpack(ARGV, s, s + ARGV[s - 1] - 1))
  enqueue(Q, list, 'primary', id, level, owner, false)
  redis.call('ZADD', KEYS[1], stamp, id)
  if owner ~= '' then redis.call('ZADD', KEYS[6], stamp, id) end
  if task_type ~= '' then redis.call('ZADD', type_index, stamp, id) end
  count_type(KEYS[7], task_type, 'submitted')
  changed(nil, KEYS[3], id, '', 'PENDING', stamp, nil, count(KEYS[4], 'submitted'))
end
if idem then redis.call('SET', idem, cjson.encode(ids), 'PX', ARGV[1]) end
return {'ok', stamp}
