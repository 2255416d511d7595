-- Shared helpers, prepended to every transition script by core/lua.py.
-- Time comes from the Redis server, so every process and container agrees on "now".
-- Every figure the operations API shows is changed here, in the same script as the state it
-- counts, so no counter can drift from the truth.

local HISTORY_MAX = 50             -- entries kept in a task's audit trail (the newest)
local ERROR_MAX = 500              -- characters of an error message kept in an audit entry
local CONSUMER_STATS_TTL = 86400   -- seconds a consumer's counts outlive its last report
-- Upper bounds (ms) of the run-time histogram's buckets; core/store.py DURATION_BUCKETS_MS is
-- the same list (a test compares them).
-- Every millisecond up to 10, then steps of at most 10 %, so quantiles are within 10 %.
local DURATION_BOUNDS = {
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28, 30, 33,
  36, 39, 42, 46, 50, 55, 60, 65, 70, 77, 84, 92, 100, 110, 120, 130, 140, 150, 160, 170, 180,
  190, 200, 220, 240, 260, 280, 300, 330, 360, 390, 420, 460, 500, 550, 600, 650, 700, 770, 840,
  920, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000, 2200, 2400, 2600, 2800,
  3000, 3300, 3600, 3900, 4200, 4600, 5000, 5500, 6000, 6500, 7000, 7700, 8400, 9200, 10000,
  11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000, 22000, 24000, 26000,
  28000, 30000, 33000, 36000, 39000, 42000, 46000, 50000, 55000, 60000, 65000, 70000, 77000,
  84000, 92000, 100000, 110000, 120000, 130000, 140000, 150000, 160000, 170000, 180000, 190000,
  200000, 220000, 240000, 260000, 280000, 300000
}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Everything a state change records besides the state itself: one entry in the task's capped
-- audit trail, the global counter it moves, and one event on the channel the live UIs listen to.
-- c: id, from, to, at, channel (key), history (key or nil), counters (key), counter (name or nil),
--    also (a second counter's name, optional), error, error_type, worker (optional),
--    by_type (the per-type counters' key, optional) and task_type (the task's type, optional):
--    with both, `counter` also moves in field '<task_type>:<counter>' of by_type (not `also`).
--    The event carries each global counter's new value.
local function changed(c)
  if c.history then
    local err = c.error
    if err and err ~= '' then err = string.sub(err, 1, ERROR_MAX) else err = nil end
    local entry = {at = c.at, from = c.from, to = c.to, error = err, worker = c.worker}
    if err then entry.error_type = c.error_type end
    redis.call('RPUSH', c.history, cjson.encode(entry))
    redis.call('LTRIM', c.history, -HISTORY_MAX, -1)
  end
  local event = {event = 'transition', task_id = c.id, from = c.from, to = c.to, at = c.at,
    worker = c.worker}
  if c.error_type and c.error_type ~= '' then event.error_type = c.error_type end
  if c.counter then
    event.counters = {[c.counter] = redis.call('HINCRBY', c.counters, c.counter, 1)}
    if c.also then event.counters[c.also] = redis.call('HINCRBY', c.counters, c.also, 1) end
    if c.by_type and c.task_type and c.task_type ~= '' then
      redis.call('HINCRBY', c.by_type, c.task_type .. ':' .. c.counter, 1)
    end
  end
  redis.call('PUBLISH', c.channel, cjson.encode(event))
end

-- One settled attempt in the reporting consumer's own counts (`kind`: completed | failed).
local function consumer_settled(key, kind)
  redis.call('HINCRBY', key, 'processed', 1)
  redis.call('HINCRBY', key, kind, 1)
  redis.call('EXPIRE', key, CONSUMER_STATS_TTL)
end

-- One finished task in a ring of `slots` buckets of `unit_ms` each (field `kind`). A slot holds
-- its bucket number in `<slot>:t`; reusing a slot for a newer bucket first zeroes it, so the ring
-- needs no cleanup and a reader sums only the slots whose bucket is recent.
local function tick(key, unit_ms, slots, now, kind)
  local bucket = math.floor(now / unit_ms)
  local slot = tostring(bucket % slots)
  if redis.call('HGET', key, slot .. ':t') ~= tostring(bucket) then
    redis.call('HSET', key, slot .. ':t', bucket, slot .. ':completed', 0, slot .. ':failed', 0)
  end
  redis.call('HINCRBY', key, slot .. ':' .. kind, 1)
  redis.call('PEXPIRE', key, unit_ms * slots * 2)
end

-- A finished task in both throughput rings: per second (last minute) and per minute (last hour).
local function finished(seconds_key, minutes_key, now, kind)
  tick(seconds_key, 1000, 60, now, kind)
  tick(minutes_key, 60000, 60, now, kind)
end

-- A completed attempt's run time in the histogram: one field per bucket (by upper bound, 'inf'
-- past the last), plus 'sum' and 'count' (ms).
local function observe_duration(key, ms)
  local field = 'inf'
  if ms <= DURATION_BOUNDS[#DURATION_BOUNDS] then
    -- Binary search for the first bound >= ms (the list is long: 141 bounds).
    local lo, hi = 1, #DURATION_BOUNDS
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if DURATION_BOUNDS[mid] < ms then lo = mid + 1 else hi = mid end
    end
    field = tostring(DURATION_BOUNDS[lo])
  end
  redis.call('HINCRBY', key, field, 1)
  redis.call('HINCRBY', key, 'sum', ms)
  redis.call('HINCRBY', key, 'count', 1)
end

-- Guard for a worker's report: the task must be ACTIVE under this very attempt token.
-- Returns nil when the report may proceed, or the refusal to return.
local function check_attempt(key, token)
  local fields = redis.call('HMGET', key, 'state', 'attempt')
  if not fields[1] then return {'not_found'} end
  if fields[1] ~= 'ACTIVE' or fields[2] ~= token then return {'stale', fields[1]} end
  return nil
end

-- Whether `state` is among `names`, a comma-separated set of core/states.py passed in (ACTIONS),
-- so that a guard and the table the API and the dashboard read are one and the same.
local function one_of(names, state)
  return string.find(',' .. names .. ',', ',' .. state .. ',', 1, true) ~= nil
end

-- ARGV names states and KEYS holds their index keys in the same order, from `first` on.
local function index_of(state, first_key, first_arg)
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
local TOKENS_TTL = 3 * 86400   -- seconds a day's per-owner token counts are kept
local SIDES = {'primary', 'retry'}

-- The pending-work keys, in the order core/store.py Ops.queue_keys() passes them from KEYS[first],
-- and the two key prefixes Ops.queue_args() passes from ARGV[afirst].
local function queues(first, afirst)
  return {ready = {primary = KEYS[first], retry = KEYS[first + 1]}, turns = KEYS[first + 2],
    depth = KEYS[first + 3], backlog = KEYS[first + 4], active = KEYS[first + 5],
    held = KEYS[first + 6], limits = KEYS[first + 7], wake = KEYS[first + 8],
    lists = ARGV[afirst], tokens = ARGV[afirst + 1]}
end

-- A task's level from its hash: a task stored before priorities has none and runs at 5.
local function level_of(raw)
  local p = tonumber(raw)
  if p == nil or p < 0 or p > 9 then return 5 end
  return math.floor(p)
end

local function list_of(Q, side, level, owner)
  return Q.lists .. side .. ':' .. level .. ':' .. owner
end

-- The owner (re)joins the end of its level's round on `side`.
local function take_turn(Q, side, level, owner)
  redis.call('ZADD', Q.ready[side], level * LEVEL_SPAN + redis.call('INCR', Q.turns), level .. owner)
end

local function count_pending(Q, side, level, owner, delta)
  redis.call('HINCRBY', Q.depth, side, delta)
  redis.call('HINCRBY', Q.depth, side .. ':' .. level, delta)
  if tonumber(redis.call('ZINCRBY', Q.backlog, delta, owner)) <= 0 then
    redis.call('ZREM', Q.backlog, owner)
  end
end

local function wake_one(Q)
  if redis.call('LLEN', Q.wake) < WAKE_MAX then redis.call('RPUSH', Q.wake, 1) end
end

-- A PENDING id enters its owner's list at the tail, or at the head (`at_head`: a task given back
-- unspent, in its place), and wakes an idle consumer.
local function enqueue(Q, side, id, level, owner, at_head)
  local len = redis.call(at_head and 'LPUSH' or 'RPUSH', list_of(Q, side, level, owner), id)
  if len == 1 and not redis.call('ZSCORE', Q.held, owner) then take_turn(Q, side, level, owner) end
  count_pending(Q, side, level, owner, 1)
  wake_one(Q)
end

-- A PENDING id leaves its list, on whichever side it waits (a cancel, a delete).
local function withdraw(Q, id, level, owner)
  for _, side in ipairs(SIDES) do
    local list = list_of(Q, side, level, owner)
    if redis.call('LREM', list, 0, id) > 0 then
      count_pending(Q, side, level, owner, -1)
      if redis.call('LLEN', list) == 0 then redis.call('ZREM', Q.ready[side], level .. owner) end
    end
  end
end

-- Until when (ms) the owner's work must wait, or nil: its tasks running fleet-wide reached its
-- concurrency cap ('+inf': until one ends), or its tokens today reached its daily budget (until
-- the next UTC midnight). A limit of the owner's own, else of '*' (every key).
local function hold_of(Q, owner, now)
  local l = redis.call('HMGET', Q.limits, owner .. ':concurrency', owner .. ':daily_tokens',
    '*:concurrency', '*:daily_tokens')
  local cap, budget = tonumber(l[1] or l[3]), tonumber(l[2] or l[4])
  if cap and tonumber(redis.call('HGET', Q.active, owner) or 0) >= cap then return '+inf' end
  if budget then
    local day = math.floor(now / DAY_MS)
    if tonumber(redis.call('HGET', Q.tokens .. day, owner) or 0) >= budget then return (day + 1) * DAY_MS end
  end
  return nil
end

local function hold(Q, owner, until_ms)
  redis.call('ZADD', Q.held, until_ms, owner)
  for _, side in ipairs(SIDES) do
    local members = {}
    for level = 0, 9 do members[#members + 1] = level .. owner end
    redis.call('ZREM', Q.ready[side], unpack(members))
  end
end

-- The owner's work may run again: it takes a turn at the end of each level where it waits.
local function release_hold(Q, owner)
  redis.call('ZREM', Q.held, owner)
  for _, side in ipairs(SIDES) do
    for level = 0, 9 do
      if redis.call('LLEN', list_of(Q, side, level, owner)) > 0 then
        take_turn(Q, side, level, owner)
        wake_one(Q)
      end
    end
  end
end

-- One of the owner's tasks stopped running (finished, rescheduled, given back, recovered,
-- cancelled): a hold that no longer applies ends.
local function left_active(Q, owner, now)
  owner = owner or ''
  if redis.call('HINCRBY', Q.active, owner, -1) <= 0 then redis.call('HDEL', Q.active, owner) end
  if redis.call('ZSCORE', Q.held, owner) and not hold_of(Q, owner, now) then release_hold(Q, owner) end
end

-- The next PENDING id to run, taken out of its list: the most urgent level of either side; at
-- the same level, `prefer` ('primary' | 'retry'), the consumer's draw. Owners held past their
-- time are looked at again first. Returns id, side, owner (nil when nothing may run).
local function dequeue(Q, prefer, now)
  for _, owner in ipairs(redis.call('ZRANGEBYSCORE', Q.held, '-inf', now, 'LIMIT', 0, 10)) do
    release_hold(Q, owner)
  end
  while true do
    local heads = {}
    for _, side in ipairs(SIDES) do
      local h = redis.call('ZRANGE', Q.ready[side], 0, 0)[1]
      if h then heads[side] = {member = h, level = tonumber(string.sub(h, 1, 1))} end
    end
    local side = prefer
    if not heads.primary and not heads.retry then return nil end
    if not heads.retry or (heads.primary and heads.primary.level < heads.retry.level) then side = 'primary'
    elseif not heads.primary or heads.retry.level < heads.primary.level then side = 'retry' end
    local h = heads[side]
    local owner = string.sub(h.member, 2)
    local until_ms = hold_of(Q, owner, now)
    if until_ms then
      hold(Q, owner, until_ms)   -- out of every round: this loop meets it no more
    else
      local list = list_of(Q, side, h.level, owner)
      local id = redis.call('LPOP', list)
      if redis.call('LLEN', list) == 0 then
        redis.call('ZREM', Q.ready[side], h.member)
      else
        take_turn(Q, side, h.level, owner)
      end
      if id then
        count_pending(Q, side, h.level, owner, -1)
        return id, side, owner
      end
    end
  end
end

-- A completed task's tokens count against its owner's budget for the day.
local function spend_tokens(Q, owner, tokens, now)
  if tokens <= 0 then return end
  local key = Q.tokens .. math.floor(now / DAY_MS)
  redis.call('HINCRBY', key, owner or '', tokens)
  redis.call('EXPIRE', key, TOKENS_TTL)
end
