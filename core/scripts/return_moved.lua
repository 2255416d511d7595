-- return_moved: an id a blocking BLMOVE moved into a consumer's in-flight list while the
-- consumer may no longer take work (the shared breaker opened, or its Celery worker went away,
-- during the wait) goes back to the head of the primary list, where it was, still PENDING: no
-- attempt is made, no retry is spent, and no state changes.
-- KEYS: 1 in-flight list, 2 primary list
-- ARGV: 1 task key prefix, 2 id
-- Returns: 'returned' | 'dropped' (no longer PENDING: cancelled or deleted meanwhile; it only
--          leaves the in-flight list) | 'absent' (not in the in-flight list: nothing done)
-- Events: none (no state change)
local id = ARGV[2]
if redis.call('LREM', KEYS[1], -1, id) == 0 then return 'absent' end
if redis.call('HGET', ARGV[1] .. id, 'state') ~= 'PENDING' then return 'dropped' end
redis.call('LPUSH', KEYS[2], id)
return 'returned'
