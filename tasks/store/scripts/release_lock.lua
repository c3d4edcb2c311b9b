-- release_lock.lua: release a subject's lock, settle a step's outbox and append its history
-- entry in one call.
--
-- The same release python-redis-lock performs (owner check, wake-up signal for waiters, delete),
-- plus the HDEL that marks the events produced by the step as published. The runtime publishes
-- while it still holds the lock, then calls this: one round trip instead of two. Registered by
-- tasks/store/memory.py; key names come from tasks/store/keys.py (all with the shard's hash
-- tag {<t>}: one slot).
--
-- KEYS[1]  lock:orch:{<t>}:wf:<s>          string  the lock; value = the holder's token
-- KEYS[2]  lock-signal:orch:{<t>}:wf:<s>   list    python-redis-lock's wake-up signal
-- KEYS[3]  orch:{<t>}:wf:<s>:outbox        hash    event id -> unpublished events of that step
-- KEYS[4]  orch:{<t>}:wf:<s>:history       list    msgpack history entries, oldest first
-- KEYS[5]  orch:{<t>}:wf:<s>:record        hash    the record (its time to live is the history's)
--
-- ARGV[1]  lease token
-- ARGV[2]  signal expiry, milliseconds
-- ARGV[3]  id of the event whose outbox is settled, or "" for none
-- ARGV[4]  history entry of a step that wrote no state (a duplicate, an ignored event), or ""
-- ARGV[5]  most history entries kept
--
-- The entry is appended only while the lease still holds the lock (the same fencing as the
-- write) and only to a workflow whose record exists; it expires with the record.
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
if ARGV[4] ~= "" and redis.call("EXISTS", KEYS[5]) == 1 then
    redis.call("RPUSH", KEYS[4], ARGV[4])
    redis.call("LTRIM", KEYS[4], -tonumber(ARGV[5]), -1)
    local ttl = redis.call("PTTL", KEYS[5])
    if ttl > 0 then
        redis.call("PEXPIRE", KEYS[4], ttl)
    end
end
redis.call("DEL", KEYS[2])
redis.call("LPUSH", KEYS[2], 1)
redis.call("PEXPIRE", KEYS[2], ARGV[2])
redis.call("DEL", KEYS[1])
return 0
