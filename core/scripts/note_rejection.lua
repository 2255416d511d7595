-- note_rejection: one more attempt refused as bad input, for INPUT_REJECTED_GUARD. Counts the
-- run of such refusals, of different tasks, with the very same message: another message starts a
-- new run, and a success ends it (the workers delete both keys). The run is forgotten `ttl`
-- after its last refusal.
-- KEYS: 1 run hash (field: message), 2 set of the run's task ids
-- ARGV: 1 task id, 2 message, 3 ttl ms
-- Returns: the run's task ids, this one included (its length is the run's)
-- Events: none (no task changes state here)
if redis.call('HGET', KEYS[1], 'message') ~= ARGV[2] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'message', ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return redis.call('SMEMBERS', KEYS[2])
