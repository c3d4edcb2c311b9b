-- write_record.lua: the one write of an orchestrator step, atomic on one Redis.
--
-- Compare-and-set of a subject's record, fenced by its python-redis-lock lease, together with
-- the consumed event id and the step's outbox. Registered by tasks/store/memory.py; key names
-- come from tasks/store/keys.py. Every key carries the hash tag {<t>} of the workflow's shard:
-- the workflow's own keys and its shard's timer and search indexes, so on a Redis Cluster the
-- call touches one slot. Every key touched is declared here; none is built in Lua.
--
-- KEYS[1]  orch:{<t>}:wf:<s>:record     hash    version (decimal), blob (msgpack record)
-- KEYS[2]  orch:{<t>}:wf:<s>:consumed   set     ids of events applied to the subject
-- KEYS[3]  orch:{<t>}:wf:<s>:outbox     hash    event id -> msgpack list of events to publish
-- KEYS[4]  lock:orch:{<t>}:wf:<s>       string  python-redis-lock key; its value is the holder's token
-- KEYS[5]  orch:{<t>}:wf:<s>:timers     hash    timer id -> msgpack of the event that fires it
-- KEYS[6]  orch:{<t>}:timers            zset    "<s>|<timer id>" by due time (the shard's timer index)
-- KEYS[7]  orch:{<t>}:wf:<s>:history    list    msgpack history entries, oldest first
-- KEYS[8]  orch:{<t>}:wf:<s>:summary    hash    the search index row
-- KEYS[9]  orch:{<t>}:index:all         zset    the shard's workflows by updated ms
-- KEYS[10] orch:{<t>}:index:status:<status>            zset  (the new status)
-- KEYS[11] orch:{<t>}:index:orch:<name>                zset
-- KEYS[12] orch:{<t>}:index:orch:<name>:<version>      zset
-- KEYS[13] orch:{<t>}:index:expiring    zset    finished workflows by record expiry, epoch ms; member
--                                               "<s>|<status>|<orchestrator>|<version>|<parent>": the
--                                               sets sweep_index.lua removes it from once the keys are gone
-- KEYS[14] orch:{<t>}:index:parent:<parent>            zset  (a child workflow; else KEYS[9], unused)
-- KEYS[15..19] orch:{<t>}:index:status:<status> of every status (the old status's set is one)
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
-- ARGV[9]  the step's history entry (msgpack), or ""
-- ARGV[10] most history entries kept (the oldest are trimmed)
-- ARGV[11] "1" to store the index row given in ARGV[12..17], or "" (no index change)
-- ARGV[12] status   ARGV[13] orchestrator   ARGV[14] version
-- ARGV[15] started ms (kept from the first write)   ARGV[16] updated ms   ARGV[17] parent or ""
-- ARGV[18] "orch:{<t>}:index:status:": the old status's set is the one of KEYS[15..19] named
--          this plus the old status (moved out of)
-- ARGV[19] the subject (the member in the index sets)
-- ARGV[20] "|": the separator of the fields of an orch:index:expiring member
--
-- The history entry and the index row are written by the same call as the state they describe:
-- an entry exists exactly when its step was written, and the index never disagrees with the
-- record. The core decided both; this script only stores them.
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

if ARGV[9] ~= "" then
    redis.call("RPUSH", KEYS[7], ARGV[9])
    redis.call("LTRIM", KEYS[7], -tonumber(ARGV[10]), -1)
end

local indexed = ARGV[11] ~= ""
local sep = ARGV[20]
if indexed then
    local subject = ARGV[19]
    local updated = tonumber(ARGV[16])
    local previous = redis.call("HMGET", KEYS[8], "status", "orchestrator", "version", "parent")
    if previous[1] then
        -- A finished workflow written again (a retry) leaves the sweep's list under its old name.
        redis.call("ZREM", KEYS[13],
            subject .. sep .. previous[1] .. sep .. previous[2] .. sep .. previous[3] .. sep .. (previous[4] or ""))
        if previous[1] ~= ARGV[12] then
            local old = ARGV[18] .. previous[1]
            for i = 15, 19 do
                if KEYS[i] == old then
                    redis.call("ZREM", KEYS[i], subject)
                end
            end
        end
    end
    redis.call("HSETNX", KEYS[8], "started", ARGV[15])
    redis.call("HSET", KEYS[8], "orchestrator", ARGV[13], "version", ARGV[14], "status", ARGV[12],
        "updated", ARGV[16], "parent", ARGV[17])
    redis.call("ZADD", KEYS[9], updated, subject)
    redis.call("ZADD", KEYS[10], updated, subject)
    redis.call("ZADD", KEYS[11], updated, subject)
    redis.call("ZADD", KEYS[12], updated, subject)
    if ARGV[17] ~= "" then
        redis.call("ZADD", KEYS[14], updated, subject)
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
    redis.call("EXPIRE", KEYS[7], ttl)
    if indexed then
        local now = redis.call("TIME")
        local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + ttl * 1000
        redis.call("HSET", KEYS[8], "expires", expires)
        redis.call("EXPIRE", KEYS[8], ttl)
        redis.call("ZADD", KEYS[13], expires,
            ARGV[19] .. sep .. ARGV[12] .. sep .. ARGV[13] .. sep .. ARGV[14] .. sep .. ARGV[17])
    end
else
    redis.call("PERSIST", KEYS[1])
    redis.call("PERSIST", KEYS[2])
    redis.call("PERSIST", KEYS[3])
    redis.call("PERSIST", KEYS[5])
    redis.call("PERSIST", KEYS[7])
    if indexed then
        redis.call("HDEL", KEYS[8], "expires")
        redis.call("PERSIST", KEYS[8])
    end
end

return {1, new_version}
