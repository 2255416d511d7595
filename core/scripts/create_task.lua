-- create_task: new tasks enter PENDING at the tail of the primary list, all of them in one step
-- (a single submit is a batch of one). With an idempotency key, a key already used within its
-- retention returns the tasks it created instead, so concurrent duplicates create nothing twice.
-- KEYS: 1 primary list, 2 PENDING index, 3 all-tasks index, 4 events channel, 5 counters,
--       6 idempotency key ('' = none), 7 the owner's index ('' = no owner: the API runs without
--       keys), 8 per-type counters, then for each task: 9+3i its hash, 10+3i its history,
--       11+3i its type's index ('' = a task without a type: in no type index, counted globally only)
-- ARGV: 1 idempotency retention ms, 2 task key prefix (is a remembered task still there?),
--       3.. one JSON object per task: its hash fields (with `id` and `owner`; timestamps are set here)
-- Returns: {'ok', created_at} | {'exists', id} | {'duplicate', JSON array of the ids first created}
-- Events: none -> PENDING, per task
local idem = KEYS[6]
if idem ~= '' then
  local seen = redis.call('GET', idem)
  if seen then
    local ids = cjson.decode(seen)
    -- A key whose tasks were deleted meanwhile is free again.
    if redis.call('EXISTS', ARGV[2] .. ids[1]) == 1 then
      -- Written again (same TTL), so that a WAIT after this replay also covers the first submit,
      -- which an earlier WAIT may not have seen replicated (REDIS_MIN_REPLICAS_ACK).
      local ttl = redis.call('PTTL', idem)
      if ttl > 0 then redis.call('PEXPIRE', idem, ttl) end
      return {'duplicate', seen}
    end
  end
end
local tasks = {}
for i = 3, #ARGV do
  local fields = cjson.decode(ARGV[i])
  if redis.call('EXISTS', KEYS[9 + 3 * (i - 3)]) == 1 then return {'exists', fields.id} end
  tasks[#tasks + 1] = fields
end
local now = now_ms()
local ids = {}
for n, fields in ipairs(tasks) do
  local key, history, type_index = KEYS[9 + 3 * (n - 1)], KEYS[10 + 3 * (n - 1)], KEYS[11 + 3 * (n - 1)]
  local flat = {}
  for name, value in pairs(fields) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', key, 'created_at', now, 'updated_at', now, unpack(flat))
  redis.call('RPUSH', KEYS[1], fields.id)
  redis.call('ZADD', KEYS[2], now, fields.id)
  redis.call('ZADD', KEYS[3], now, fields.id)
  if KEYS[7] ~= '' then redis.call('ZADD', KEYS[7], now, fields.id) end
  if type_index ~= '' then redis.call('ZADD', type_index, now, fields.id) end
  changed({id = fields.id, from = '', to = 'PENDING', at = now, channel = KEYS[4], history = history,
    counters = KEYS[5], counter = 'submitted', by_type = KEYS[8], task_type = fields.task_type})
  ids[n] = fields.id
end
if idem ~= '' then redis.call('SET', idem, cjson.encode(ids), 'PX', tonumber(ARGV[1])) end
return {'ok', now}
