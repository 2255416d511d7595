-- Shared helpers: defined once in the function library on Redis 7 and later, prepended to each
-- transition script (those it uses) on Redis 6.2; core/lua.py.
-- Time comes from the Redis server, so every process and container agrees on "now".
-- Every figure the operations API shows is changed here, in the same script as the state it
-- counts, so no counter can drift from the truth.

local HISTORY_MAX = 50             -- entries kept in a task's audit trail (the newest)
local ERROR_MAX = 500              -- characters of an error message kept in an audit entry
local CONSUMER_STATS_TTL = 86400   -- seconds a consumer's counts outlive it (core/store.py: the same)

-- The server's time in ms, as a number (for arithmetic) and as its digits (for every argument
-- and every JSON text): Redis prints each Lua number given to redis.call, and Lua each one joined
-- to a string, which costs more than passing the digits TIME replied.
local function now_ms()
  local t = redis.call('TIME')
  local ms = t[1] .. string.sub('00000' .. t[2], -6, -4)
  return tonumber(ms), ms
end

-- A string as JSON text: an error message or its type, which may hold what JSON escapes. Ids
-- (UUIDs), states and worker names (WORKER_ID: no quote, backslash or control character, checked
-- by core/settings.py) are written as they are.
local function quoted(s)
  if string.find(s, '[%c"\\]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end

-- A state change recorded: one entry in the task's capped audit trail (`history`; nil: none),
-- and one event on `channel`, the one the live UIs listen to, carrying `counts`: the global
-- counters the change moved with their new values (count()'s parts, joined by commas). Both are
-- JSON text built here, their shared part once (cjson's walk over a table costs more than these
-- few fields). `worker`, and `err` with `error_type`, are optional.
local function changed(history, channel, id, from, to, at, worker, counts, err, error_type)
  local common = '"at":' .. at .. ',"from":"' .. from .. '","to":"' .. to ..
    (worker and '","worker":"' .. worker .. '"' or '"')
  if history then
    local entry = common
    if err and err ~= '' then
      entry = entry .. ',"error":' .. quoted(string.sub(err, 1, ERROR_MAX)) ..
        (error_type and ',"error_type":' .. quoted(error_type) or '')
    end
    -- Trimmed only when over the cap: one call less on every state change.
    if redis.call('RPUSH', history, '{' .. entry .. '}') > HISTORY_MAX then
      redis.call('LTRIM', history, -HISTORY_MAX, -1)
    end
  end
  redis.call('PUBLISH', channel, '{"event":"transition","task_id":"' .. id .. '",' .. common ..
    (error_type and error_type ~= '' and ',"error_type":' .. quoted(error_type) or '') ..
    ',"counters":{' .. counts .. '}}')
end

-- The audit trail holds what the task's hash cannot tell: claim_task and complete_task write no
-- entry, create_task neither: the creation, the start of the task's latest attempt and its
-- completion are read from the hash (created_at; started_at and consumer; finished_at) by
-- core/store.py audit_trail(), three calls less per task. So a step that ends an attempt any other
-- way writes the entry of its start first, while the hash still tells it, unless the last entry
-- is that start already (written by a claim of before this rule).
local function began_attempt(history, key)
  local last = redis.call('LINDEX', history, '-1')
  if last and string.find(last, '"to": *"ACTIVE"') then return end
  local f = redis.call('HMGET', key, 'started_at', 'consumer')
  redis.call('RPUSH', history, '{"at":' .. (f[1] or '0') .. ',"from":"PENDING","to":"ACTIVE","worker":"' ..
    (f[2] or '') .. '"}')
end

-- One more in global counter `name`; returns the counter's part of an event's `counters`.
local function count(counters, name)
  return '"' .. name .. '":' .. redis.call('HINCRBY', counters, name, '1')
end

-- `n` (default 1) more in field '<task_type>:<name>' of the per-type counters (a task without a
-- type is counted globally only).
local function count_type(by_type, task_type, name, n)
  if task_type and task_type ~= '' then redis.call('HINCRBY', by_type, task_type .. ':' .. name, n or '1') end
end

-- One more in a consumer's own counts (`field`: completed | failed | taken_primary | taken_retry;
-- `processed` is completed + failed, added by the reader). The TTL is set when a count makes the
-- hash (its first field is then 1), and kept alive while the consumer beats (TaskStore.beat), so
-- a report need not renew it.
local function consumer_count(key, field)
  if redis.call('HINCRBY', key, field, '1') == 1 then redis.call('EXPIRE', key, CONSUMER_STATS_TTL) end
end

-- `n` (default 1) tasks finished at `now` in a throughput ring (`kind`: completed | failed): field
-- '<bucket>:<kind>', the bucket = `now` in units of `unit_ms`. The first count of a kind in a
-- bucket deletes the fields of buckets `slots` or more before it (a reader sums the last `slots`)
-- and renews the ring's TTL, so the ring stays small and goes when nothing finishes; every other
-- count costs one HINCRBY.
local function tick(key, unit_ms, slots, now, kind, n)
  local bucket = math.floor(now / unit_ms)
  n = n or 1
  if redis.call('HINCRBY', key, bucket .. ':' .. kind, n) > n then return end
  local old = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if tonumber(string.match(field, '^%d+')) <= bucket - slots then old[#old + 1] = field end
  end
  if #old > 0 then redis.call('HDEL', key, unpack(old)) end
  redis.call('PEXPIRE', key, unit_ms * slots * 2)
end

-- A finished task in both throughput rings: per second (last minute) and per minute (last hour).
-- (A completed one goes through the tally instead: fold_tally.lua.)
local function finished(seconds_key, minutes_key, now, kind)
  tick(seconds_key, 1000, 60, now, kind)
  tick(minutes_key, 60000, 60, now, kind)
end

-- A run time's bucket in the histogram, as its field (the upper bound in ms; 'inf' past 5 min):
-- every ms up to 10, then in each decade (10-100 ms, 100-1000 ms, ...) the steps below, each at
-- most 10 % of the bound. core/store.py DURATION_BUCKETS_MS lists the same bounds (a test
-- compares them for every ms): a formula, not a table every script would build on every call.
local function duration_bucket(ms)
  if ms <= 10 then return tostring(math.max(1, math.ceil(ms))) end
  if ms > 300000 then return 'inf' end
  local scale = 1
  while ms > 100 * scale do scale = scale * 10 end
  local m = ms / scale  -- in (10, 100]
  local from, step = 84, 8
  if m <= 20 then from, step = 10, 1
  elseif m <= 30 then from, step = 20, 2
  elseif m <= 42 then from, step = 30, 3
  elseif m <= 50 then from, step = 42, 4
  elseif m <= 70 then from, step = 50, 5
  elseif m <= 84 then from, step = 70, 7 end
  return tostring((from + step * math.ceil((m - from) / step)) * scale)
end

-- Guard for a worker's report: the task must be ACTIVE under this very attempt token. Reads
-- `state`, `attempt` and the fields named after them (`...`) in one HMGET. Returns the refusal
-- to return (nil when the report may proceed), and the values read: the named fields from [3].
local function check_attempt(key, token, ...)
  local f = redis.call('HMGET', key, 'state', 'attempt', ...)
  if not f[1] then return {'not_found'}, f end
  if f[1] ~= 'ACTIVE' or f[2] ~= token then return {'stale', f[1]}, f end
  return nil, f
end

-- Whether `state` is among `names`, a comma-separated set of core/states.py passed in (ACTIONS),
-- so that a guard and the table the API and the dashboard read are one and the same.
local function one_of(names, state)
  return string.find(',' .. names .. ',', ',' .. state .. ',', 1, true) ~= nil
end

-- ARGV names states and KEYS holds their index keys in the same order, from `first` on.
local function index_of(KEYS, ARGV, state, first_key, first_arg)
  for i = first_arg, #ARGV do
    if ARGV[i] == state then return KEYS[first_key + i - first_arg] end
  end
  return nil
end

-- === Pending work: priorities, owners' turns, per-key limits (issue 18) =========================
-- A PENDING id sits in its owner's list for its side and level (`<lists><side>:<level>:<owner>`).
-- Each side's `ready` set holds, per level, the owners with work there, member `<level><owner>`,
-- score `level * LEVEL_SPAN + turn`: its lowest entry is the most urgent level's owner whose turn
-- is oldest. Taking a task gives the owner a new turn at the end of its level's round, so owners
-- alternate (round-robin) within a level, and a level goes first while it has work (strict).
-- An owner over a limit is held (`held`, score = when to look again, +inf = when one of its
-- running tasks ends) and out of every `ready` set meanwhile, so a claim never walks past it.
local LEVEL_SPAN = 1e13        -- turns per level: scores stay exact doubles (< 2^53)
local WAKE_MAX = 64            -- wake-up marks kept for idle consumers (more wake no one more)
local DAY_MS = 86400000
local SIDES = {'primary', 'retry'}
local LEVELS = {'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}

-- The eleven pending-work keys, in the order core/store.py Ops._q passes them from KEYS[first]
-- (`after`: the position of the key that follows them).
local function queues(KEYS, first)
  return {ready = {primary = KEYS[first], retry = KEYS[first + 1]}, turns = KEYS[first + 2],
    depth = KEYS[first + 3], backlog = KEYS[first + 4], active = KEYS[first + 5],
    held = KEYS[first + 6], limits = KEYS[first + 7], wake = KEYS[first + 8],
    tokens = KEYS[first + 9], held_turns = KEYS[first + 10], after = first + 11}
end

-- A task's level from its hash, as its digit (joined into names as it is): a task stored before
-- priorities has none and runs at 5.
local function level_of(raw)
  if raw and #raw == 1 and raw >= '0' and raw <= '9' then return raw end
  local p = tonumber(raw)
  if p == nil or p < 0 or p > 9 then return '5' end
  return tostring(math.floor(p))
end

-- One task's two lists (its owner's, at its level, on each side), passed in KEYS from `first`
-- in the order of SIDES (core/store.py Ops.task_lists()): a step that withdraws a task or puts
-- it back names them, as it names every key it touches.
local function lists_at(KEYS, first)
  return {primary = KEYS[first], retry = KEYS[first + 1]}
end

-- Whether the task's hash still has the owner and level its caller named its lists by (ARGV):
-- they never change, so only a task deleted and made anew under the same id could differ.
local function same_place(owner, raw_priority, expected_owner, expected_level)
  return (owner or '') == expected_owner and level_of(raw_priority) == expected_level
end

-- The owner (re)joins the end of its level's round on `side`.
local function take_turn(Q, side, level, owner)
  redis.call('ZADD', Q.ready[side], level * LEVEL_SPAN + redis.call('INCR', Q.turns), level .. owner)
end

-- The depth is kept per side and level only: a side's is their sum (added by its readers).
-- `delta`: '1' or '-1' (a string: Redis need not print a number).
local function count_pending(Q, side, level, owner, delta)
  redis.call('HINCRBY', Q.depth, side .. ':' .. level, delta)
  if tonumber(redis.call('ZINCRBY', Q.backlog, delta, owner)) <= 0 then
    redis.call('ZREM', Q.backlog, owner)
  end
end

local function wake_one(Q)
  if redis.call('LLEN', Q.wake) < WAKE_MAX then redis.call('RPUSH', Q.wake, '1') end
end

-- A held owner's turns wait in `held_turns` (field: the owner; value: its '<side>:<level>'
-- entries, space-separated; '' none) until release_hold() gives them back: no step looks into
-- its lists.
local function keep_turn(Q, owner, turn)
  local kept = redis.call('HGET', Q.held_turns, owner) or ''
  if not string.find(' ' .. kept .. ' ', ' ' .. turn .. ' ', 1, true) then
    redis.call('HSET', Q.held_turns, owner, kept == '' and turn or kept .. ' ' .. turn)
  end
end

-- A list of a held owner's emptied (a cancel, a delete): its kept turn goes too.
local function drop_turn(Q, owner, turn)
  local kept = redis.call('HGET', Q.held_turns, owner)
  if not kept then return end
  local rest = {}
  for entry in string.gmatch(kept, '%S+') do
    if entry ~= turn then rest[#rest + 1] = entry end
  end
  redis.call('HSET', Q.held_turns, owner, table.concat(rest, ' '))  -- '' still says: held now
end

-- A PENDING id enters `list` (its owner's at its level on `side`) at the tail, or at the head
-- (`at_head`: a task given back unspent, in its place), and wakes an idle consumer.
local function enqueue(Q, list, side, id, level, owner, at_head)
  local len = redis.call(at_head and 'LPUSH' or 'RPUSH', list, id)
  if len == 1 then
    if redis.call('ZSCORE', Q.held, owner) then keep_turn(Q, owner, side .. ':' .. level)
    else take_turn(Q, side, level, owner) end
  end
  count_pending(Q, side, level, owner, '1')
  wake_one(Q)
end

-- A PENDING id leaves its list (`lists`: lists_at()), on whichever side it waits (a cancel, a
-- delete).
local function withdraw(Q, lists, id, level, owner)
  for _, side in ipairs(SIDES) do
    local list = lists[side]
    if redis.call('LREM', list, 0, id) > 0 then
      count_pending(Q, side, level, owner, '-1')
      if redis.call('LLEN', list) == 0 and redis.call('ZREM', Q.ready[side], level .. owner) == 0 then
        drop_turn(Q, owner, side .. ':' .. level)
      end
    end
  end
end

-- Until when (ms) the owner's work must wait, or nil: its tasks running fleet-wide reached its
-- concurrency cap ('+inf': until one ends), or its tokens today reached its daily budget (until
-- the next UTC midnight). A limit of the owner's own, else of '*' (every key).
local function hold_of(Q, owner, now)
  local l = redis.call('HMGET', Q.limits, owner .. ':concurrency', owner .. ':daily_tokens',
    '*:concurrency', '*:daily_tokens')
  local cap, budget = l[1] or l[3], l[2] or l[4]
  if cap and tonumber(redis.call('HGET', Q.active, owner) or 0) >= tonumber(cap) then return '+inf' end
  if budget then
    local day = math.floor(now / DAY_MS)
    local spent = redis.call('HGET', Q.tokens, day .. ':' .. owner)
    if tonumber(spent or 0) >= tonumber(budget) then return (day + 1) * DAY_MS end
  end
  return nil
end

-- The owner's turns leave every round (and wait in `held_turns`) until release_hold().
local function hold(Q, owner, until_ms)
  redis.call('ZADD', Q.held, until_ms, owner)
  redis.call('HSETNX', Q.held_turns, owner, '')
  local members = {}
  for _, level in ipairs(LEVELS) do members[#members + 1] = level .. owner end
  for _, side in ipairs(SIDES) do
    for i, score in ipairs(redis.call('ZMSCORE', Q.ready[side], unpack(members))) do
      if score then
        redis.call('ZREM', Q.ready[side], members[i])
        keep_turn(Q, owner, side .. ':' .. LEVELS[i])
      end
    end
  end
end

-- The owner's work may run again: it takes a turn at the end of each level where it waited.
-- A turn kept for a list emptied meanwhile (a cancel) costs the next claim one look. An owner
-- held before turns were kept (no field) takes one at every level: the claims drop the empty.
local function release_hold(Q, owner)
  redis.call('ZREM', Q.held, owner)
  local kept = redis.call('HGET', Q.held_turns, owner)
  if kept then
    redis.call('HDEL', Q.held_turns, owner)
  else
    local all = {}
    for _, side in ipairs(SIDES) do
      for _, level in ipairs(LEVELS) do all[#all + 1] = side .. ':' .. level end
    end
    kept = table.concat(all, ' ')
  end
  for side, level in string.gmatch(kept, '(%a+):(%d)') do
    take_turn(Q, side, level, owner)
    wake_one(Q)
  end
end

-- One of the owner's tasks stopped running (finished, rescheduled, given back, recovered,
-- cancelled): a hold that no longer applies ends.
local function left_active(Q, owner, now)
  owner = owner or ''
  if redis.call('HINCRBY', Q.active, owner, '-1') <= 0 then redis.call('HDEL', Q.active, owner) end
  if redis.call('ZSCORE', Q.held, owner) and not hold_of(Q, owner, now) then release_hold(Q, owner) end
end

-- The head of `side`'s round: its member, its level, and whether another owner waits at the same
-- level (the member after it is of that level); nothing when the side has no work.
local function head_of(Q, side)
  local two = redis.call('ZRANGE', Q.ready[side], '0', '1')
  local member = two[1]
  if not member then return nil end
  local level = string.sub(member, 1, 1)
  return member, level, two[2] ~= nil and string.sub(two[2], 1, 1) == level
end

-- Owners held until a time that has come (a daily budget's next day) may run again; done by the
-- scheduler's promote_due, so no claim pays for the look.
local function release_due_holds(Q, now)
  for _, owner in ipairs(redis.call('ZRANGEBYSCORE', Q.held, '-inf', now)) do release_hold(Q, owner) end
end

-- The side whose head goes next, given both sides' heads (member and level; no member: no
-- work): the most urgent level of either; at the same level, `prefer` ('primary' | 'retry'), the
-- consumer's draw. nil when neither side has work.
local function choose(p_member, p_level, r_member, r_level, prefer)
  if not p_member and not r_member then return nil end
  if not r_member or (p_member and p_level < r_level) then return 'primary' end
  if not p_member or r_level < p_level then return 'retry' end
  return prefer
end

-- The turn a claim takes now: the side choose() gives, after holding every owner at a head that
-- a limit stops (out of every round: it is met no more). Returns the side (nil: nothing may run)
-- and both sides' heads (head_of(): member, level and shared, primary's then retry's).
local function next_turn(Q, prefer, now)
  while true do
    local pm, pl, ps = head_of(Q, 'primary')
    local rm, rl, rs = head_of(Q, 'retry')
    local side = choose(pm, pl, rm, rl, prefer)
    if not side then return nil end
    local owner = string.sub(side == 'primary' and pm or rm, 2)
    local until_ms = hold_of(Q, owner, now)
    if not until_ms then return side, pm, pl, ps, rm, rl, rs end
    hold(Q, owner, until_ms)
  end
end

-- What a consumer looks at for its next claim, for either draw: the side and the member
-- (`<level><owner>`: its list) choose() gives; '' for none. Its client reads that list's head
-- and names both in KEYS (the claim builds no key).
local function looks(pm, pl, rm, rl)
  local p, r = choose(pm, pl, rm, rl, 'primary'), choose(pm, pl, rm, rl, 'retry')
  return {p or '', p == 'primary' and pm or p and rm or '', r or '', r == 'primary' and pm or r and rm or ''}
end

-- After the head of the turn's list was taken: the owner's turn moves on, the depth goes down.
-- Alone at its level, the owner keeps its turn: a new one would change no order, as every owner
-- that comes later takes a turn after both. Returns whether the side's head changed.
local function turn_taken(Q, side, member, level, shared, owner, list)
  local moved = true
  if redis.call('LLEN', list) == 0 then
    redis.call('ZREM', Q.ready[side], member)
  elseif shared then
    take_turn(Q, side, level, owner)
  else
    moved = false
  end
  count_pending(Q, side, level, owner, '-1')
  return moved
end

-- A completed task's tokens (more than 0) count against its owner's budget for the day (field
-- '<day>:<owner>'; the scheduler deletes the days before yesterday: TaskStore.prune_token_days).
local function spend_tokens(Q, owner, tokens, now)
  redis.call('HINCRBY', Q.tokens, math.floor(now / DAY_MS) .. ':' .. (owner or ''), tokens)
end
