-- fold_tally: the tally's lines (complete_task.lua: one per completed attempt) added into the
-- figures they move, oldest first, at most ARGV[1] lines per call: the counters' prompt_tokens
-- and completion_tokens, the run-time histogram, both throughput rings (each at the second the
-- task completed), the per-type `completed`. Run by the scheduler and by each reader of those
-- figures before it reads: a line is added exactly once (taken off in the same step).
-- KEYS: 1 tally, 2 counters, 3 durations histogram, 4 per-second ring, 5 per-minute ring,
--       6 per-type counters
-- ARGV: 1 most lines to fold, 2 '1': also return the time, 3.. positions in KEYS of the hashes
--       to return as they stand after the fold (a reader's read, in the same call and step: a
--       reader of the rings can tell which transitions it hears of later are counted already,
--       their `at` being after the time)
-- Returns: {lines folded, now ms (or nil), each hash asked for as a flat field, value list}
local lines = redis.call('LRANGE', KEYS[1], '0', tonumber(ARGV[1]) - 1)
if #lines > 0 then
  redis.call('LTRIM', KEYS[1], #lines, '-1')
  local prompt, completion, sum = 0, 0, 0
  local buckets, seconds, minutes, types = {}, {}, {}, {}
  local function add(t, k) t[k] = (t[k] or 0) + 1 end
  for _, line in ipairs(lines) do
    local at, ms, p, c, task_type = string.match(line, '^(%d+) (%d+) (%d+) (%d+) ?(.*)$')
    if at then  -- always, as complete_task.lua writes it; a line of anything else is dropped
      at, ms = tonumber(at), tonumber(ms)
      prompt, completion, sum = prompt + p, completion + c, sum + ms
      add(buckets, duration_bucket(ms))
      add(seconds, at - at % 1000)
      add(minutes, at - at % 60000)
      if task_type ~= '' then add(types, task_type) end
    end
  end
  if prompt > 0 then redis.call('HINCRBY', KEYS[2], 'prompt_tokens', prompt) end
  if completion > 0 then redis.call('HINCRBY', KEYS[2], 'completion_tokens', completion) end
  for field, n in pairs(buckets) do redis.call('HINCRBY', KEYS[3], field, n) end
  redis.call('HINCRBY', KEYS[3], 'sum', sum)
  -- Oldest bucket first, as the finishes came: a bucket's first count clears those a ring no
  -- longer shows, which then never include one counted after it.
  for _, ring in ipairs({{KEYS[4], 1000, seconds}, {KEYS[5], 60000, minutes}}) do
    local starts = {}
    for at in pairs(ring[3]) do starts[#starts + 1] = at end
    table.sort(starts)
    for _, at in ipairs(starts) do tick(ring[1], ring[2], 60, at, 'completed', ring[3][at]) end
  end
  for task_type, n in pairs(types) do count_type(KEYS[6], task_type, 'completed', n) end
end
local reply = {#lines, ARGV[2] == '1' and now_ms() or false}
for i = 3, #ARGV do reply[#reply + 1] = redis.call('HGETALL', KEYS[tonumber(ARGV[i])]) end
return reply
