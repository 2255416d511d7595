-- set_limits: the per-key limits the claim enforces are replaced by those of the settings
-- (API_KEY_LIMITS), and every held owner is looked at again by the next claim (a limit raised
-- or removed frees its work; one still reached holds it again).
-- KEYS: 1 limits hash, 2 held owners
-- ARGV: field, value pairs (`<owner>:concurrency`, `<owner>:daily_tokens`; owner '*': the default of each limit)
-- Returns: number of owners held before
-- Events: none
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
local held = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, owner in ipairs(held) do redis.call('ZADD', KEYS[2], 0, owner) end
return #held
