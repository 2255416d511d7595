-- set_limits: the per-key limits the claim enforces are replaced by those of the settings
-- (API_KEY_LIMITS), and every held owner may run again: the next claim that reaches it holds it
-- again if a limit still applies (a limit raised or removed frees its work).
-- KEYS: 1..11 the pending-work keys (_lib.lua queues(): its limits and held owners among them)
-- ARGV: field, value pairs (`<owner>:concurrency`, `<owner>:daily_tokens`; owner '*': the
--       default of each limit)
-- Returns: number of owners held before
-- Events: none
local Q = queues(KEYS, 1)
redis.call('DEL', Q.limits)
if #ARGV > 0 then redis.call('HSET', Q.limits, unpack(ARGV, 1)) end
local held = redis.call('ZRANGE', Q.held, 0, -1)
for _, owner in ipairs(held) do release_hold(Q, owner) end
return #held
