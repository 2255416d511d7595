-- adapt_rate: the provider's answers pace the shared bucket of take_token (AIMD). A 429 halves
-- the bucket's `factor` (never under `floor`) and empties it, at most once per second, since the
-- 429s of calls that were already in flight together are one signal; each success gives `step`
-- back, up to 1 (the configured rate).
-- Without a configured rate (LLM_RATE_LIMIT_REQUESTS=0) the first 429 makes the bucket adaptive:
-- its `rate` is the call rate observed when the 429 came (ARGV 5), halved from there like any
-- other; once successes make the factor whole again the bucket is deleted (no limit until the
-- next 429), and it expires `ttl` after the last 429 or take.
-- KEYS: 1 bucket hash (fields: tokens, at, factor, cut_at, rate)
-- ARGV: 1 'limited' | 'ok', 2 floor (0 < floor <= 1), 3 step, 4 ttl ms of a slowed-down bucket,
--       5 observed calls per second for an adaptive bucket (0: the bucket has a configured rate)
-- Returns: the factor now in force (string)
-- Events: none (no task changes state)
local now = now_ms()
local fields = redis.call('HMGET', KEYS[1], 'factor', 'cut_at', 'rate')
local factor = tonumber(fields[1]) or 1
local observed = tonumber(ARGV[5]) or 0
if ARGV[1] == 'limited' then
  if observed > 0 and not fields[3] then
    redis.call('HSET', KEYS[1], 'rate', tostring(observed))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
  if now - (tonumber(fields[2]) or 0) < 1000 then return tostring(factor) end
  factor = math.max(tonumber(ARGV[2]), factor / 2)
  redis.call('HSET', KEYS[1], 'cut_at', now, 'tokens', 0, 'at', now)
else
  if factor >= 1 then return '1' end
  factor = math.min(1, factor + tonumber(ARGV[3]))
  if factor >= 1 and fields[3] then
    redis.call('DEL', KEYS[1])
    return '1'
  end
end
redis.call('HSET', KEYS[1], 'factor', tostring(factor))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(factor)
