-- Shared helpers, prepended to every transition script by core/lua.py.
-- Time comes from the Redis server, so every process and container agrees on "now".

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- One event per state change, on the channel the live UIs listen to.
local function publish(channel, id, from, to, now)
  redis.call('PUBLISH', channel, cjson.encode({task_id = id, from = from, to = to, at = now}))
end

-- Guard for a worker's report: the task must be ACTIVE under this very attempt token.
-- Returns nil when the report may proceed, or the refusal to return.
local function check_attempt(key, token)
  local fields = redis.call('HMGET', key, 'state', 'attempt')
  if not fields[1] then return {'not_found'} end
  if fields[1] ~= 'ACTIVE' or fields[2] ~= token then return {'stale', fields[1]} end
  return nil
end

-- ARGV names states and KEYS holds their index keys in the same order, from `first` on.
local function index_of(state, first_key, first_arg)
  for i = first_arg, #ARGV do
    if ARGV[i] == state then return KEYS[first_key + i - first_arg] end
  end
  return nil
end
