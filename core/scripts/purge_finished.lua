-- purge_finished: finished tasks past their retention, or beyond an index's size bound, are
-- deleted (hash, audit trail, chunk summaries and index entries), oldest first, one bounded batch
-- per call. The caller read the candidates and each one's owner and type first (core/store.py
-- purge_candidates), so every key is declared here; each is checked again before it goes: still
-- in the index, still past retention or beyond the bound (the server's time now), and its hash
-- still of that owner and type (an id deleted and created again meanwhile is not another's to
-- delete by these keys). A candidate that fails a check is skipped.
-- KEYS: 1 index of a terminal state, 2 all-tasks index, 3 counters, then per candidate i (from 0):
--       4+5i its hash, 5+5i its history, 6+5i its chunk summaries, 7+5i its owner's index,
--       8+5i its type's index (for owner '' or type '': the index of '', never touched, since no
--       key may be '' on a Redis Cluster)
-- ARGV: 1 retention ms (0 = keep regardless of age), 2 max entries to keep ('' = no bound;
--       0 = keep none), then per candidate i: 3+3i id, 4+3i owner, 5+3i task type (as read:
--       '' for none)
-- Returns: number of tasks deleted
-- Events: none (a bulk expiry; the counter 'expired' moves)
local now = now_ms()
local retention = tonumber(ARGV[1])
local keep = ARGV[2] ~= '' and tonumber(ARGV[2])
local deleted = 0
for i = 0, (#ARGV - 2) / 3 - 1 do
  local id, owner, task_type = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  local key = 4 + 5 * i
  local score = redis.call('ZSCORE', KEYS[1], id)
  local due = score and ((retention > 0 and tonumber(score) <= now - retention) or
    (keep and redis.call('ZRANK', KEYS[1], id) < redis.call('ZCARD', KEYS[1]) - keep))
  local f = due and redis.call('HMGET', KEYS[key], 'owner', 'task_type')
  if f and (f[1] or '') == owner and (f[2] or '') == task_type then
    if owner ~= '' then redis.call('ZREM', KEYS[key + 3], id) end
    if task_type ~= '' then redis.call('ZREM', KEYS[key + 4], id) end
    redis.call('DEL', KEYS[key], KEYS[key + 1], KEYS[key + 2])
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    deleted = deleted + 1
  end
end
if deleted > 0 then redis.call('HINCRBY', KEYS[3], 'expired', deleted) end
return deleted
