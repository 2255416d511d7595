-- take_token: take `cost` tokens from a token bucket shared by every process (the fleet's LLM
-- rate limit, a client's submission rate). The bucket refills at `rate` tokens per second up to
-- `burst`; time comes from Redis, so every container agrees on it. A `factor` field (written by
-- adapt_rate after a provider's 429, absent otherwise) scales the refill rate down.
-- KEYS: 1 bucket hash (fields: tokens, at, factor)
-- ARGV: 1 rate (tokens per second, > 0), 2 burst (capacity, >= cost), 3 cost
-- Returns: {'ok', tokens left} | {'wait', ms until `cost` tokens are there}
-- Events: none (no task changes state)
local now = now_ms()
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'factor')
local factor = tonumber(bucket[3]) or 1
rate = rate * factor
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local reply
if tokens >= cost then
  tokens = tokens - cost
  reply = {'ok', tostring(tokens)}
else
  reply = {'wait', math.ceil((cost - tokens) * 1000 / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
-- Idle buckets are full again after burst / rate seconds: then the key can go. A slowed-down
-- bucket is kept longer, so a short lull does not forget the provider's 429s.
local ttl = math.ceil(burst * 1000 / rate) + 1000
if factor < 1 then ttl = math.max(ttl, 600000) end
redis.call('PEXPIRE', KEYS[1], ttl)
return reply
