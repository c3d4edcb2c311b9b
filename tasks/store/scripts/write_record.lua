-- write_record.lua: the one write of an orchestrator step, atomic on one Redis.
--
-- Compare-and-set of a subject's record, fenced by its python-redis-lock lease, together with
-- the consumed event id and the step's outbox. Registered by tasks/store/memory.py; key names
-- come from tasks/store/keys.py (all four share the {subject} hash tag).
--
-- KEYS[1]  orch:{<s>}:record     hash    version (decimal), blob (msgpack record)
-- KEYS[2]  orch:{<s>}:consumed   set     ids of events applied to the subject
-- KEYS[3]  orch:{<s>}:outbox     hash    event id -> msgpack list of events to publish
-- KEYS[4]  lock:orch:{<s>}       string  python-redis-lock key; its value is the holder's token
-- KEYS[5]  orch:{<s>}:timers     hash    timer id -> msgpack of the event that fires it
-- KEYS[6]  orch:timers           zset    "<s>|<timer id>" by due time (the cross-workflow index)
--
-- ARGV[1]  lease token, or "" to write without a lease (no fencing)
-- ARGV[2]  prev_version: the version the writer read (0 when there was no record)
-- ARGV[3]  the new record blob (msgpack)
-- ARGV[4]  id of the event being applied, or "" for none
-- ARGV[5]  outbox blob (msgpack list of events), or "" when there is nothing to publish
-- ARGV[6]  seconds to keep the record, its consumed set and its outbox (the orchestrator says
--          so for a finished workflow), or "" to keep them until a later write
-- ARGV[7]  timer changes: msgpack {cancelled ids, {{id, due ms, event msgpack}, ...}}, or ""
-- ARGV[8]  "<s>|": the prefix of this workflow's members in the timer index
--
-- Timers are written by the same call as the state that set them: a timer exists exactly when
-- the step that set it was written, and costs no extra round trip.
--
-- Returns a two-element array:
--   { 1, new_version }       written
--   {-1, 0 }                 the lease does not hold the lock (expired, or another holder)
--   {-2, current_version }   the stored version is not prev_version
--
-- Checks run before any write, so a refused call changes nothing.

if ARGV[1] ~= "" and redis.call("GET", KEYS[4]) ~= ARGV[1] then
    return {-1, 0}
end

local current = tonumber(redis.call("HGET", KEYS[1], "version") or "0")
if current ~= tonumber(ARGV[2]) then
    return {-2, current}
end

local new_version = current + 1
redis.call("HSET", KEYS[1], "version", new_version, "blob", ARGV[3])

if ARGV[4] ~= "" then
    redis.call("SADD", KEYS[2], ARGV[4])
    if ARGV[5] ~= "" then
        redis.call("HSET", KEYS[3], ARGV[4], ARGV[5])
    end
end

if ARGV[7] ~= "" then
    local changes = cmsgpack.unpack(ARGV[7])
    for _, timer_id in ipairs(changes[1]) do
        redis.call("HDEL", KEYS[5], timer_id)
        redis.call("ZREM", KEYS[6], ARGV[8] .. timer_id)
    end
    for _, timer in ipairs(changes[2]) do
        redis.call("HSET", KEYS[5], timer[1], timer[3])
        redis.call("ZADD", KEYS[6], timer[2], ARGV[8] .. timer[1])
    end
end

-- A running workflow never expires (it may wait days for a human); a finished one is kept
-- for a retention period so late duplicates are still recognised, then forgotten.
if ARGV[6] ~= "" then
    local ttl = tonumber(ARGV[6])
    redis.call("EXPIRE", KEYS[1], ttl)
    redis.call("EXPIRE", KEYS[2], ttl)
    redis.call("EXPIRE", KEYS[3], ttl)
    redis.call("EXPIRE", KEYS[5], ttl)
else
    redis.call("PERSIST", KEYS[1])
    redis.call("PERSIST", KEYS[2])
    redis.call("PERSIST", KEYS[3])
    redis.call("PERSIST", KEYS[5])
end

return {1, new_version}
