-- release_lock.lua: release a subject's lock and settle a step's outbox in one call.
--
-- The same release python-redis-lock performs (owner check, wake-up signal for waiters, delete),
-- plus the HDEL that marks the events produced by the step as published. The runtime publishes
-- while it still holds the lock, then calls this: one round trip instead of two. Registered by
-- tasks/store/memory.py; key names come from tasks/store/keys.py.
--
-- KEYS[1]  lock:orch:{<s>}          string  the lock; value = the holder's token
-- KEYS[2]  lock-signal:orch:{<s>}   list    python-redis-lock's wake-up signal
-- KEYS[3]  orch:{<s>}:outbox        hash    event id -> unpublished events of that step
--
-- ARGV[1]  lease token
-- ARGV[2]  signal expiry, milliseconds
-- ARGV[3]  id of the event whose outbox is settled, or "" for none
--
-- Returns 0 when the lock was released, 1 when the lease no longer held it. The outbox is
-- settled either way: the step's write was fenced by the lease, so its events are the truth,
-- and they have just been published.

if ARGV[3] ~= "" then
    redis.call("HDEL", KEYS[3], ARGV[3])
end
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    return 1
end
redis.call("DEL", KEYS[2])
redis.call("LPUSH", KEYS[2], 1)
redis.call("PEXPIRE", KEYS[2], ARGV[2])
redis.call("DEL", KEYS[1])
return 0
