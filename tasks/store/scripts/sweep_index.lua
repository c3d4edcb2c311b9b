-- sweep_index.lua: remove from the search index the workflows whose record has expired.
--
-- Redis expires keys, not members of sorted sets: a finished workflow's record, history and
-- summary expire, but its subject stays in the index sets. write_record.lua puts every finished
-- workflow in orch:index:expiring, scored by when its record expires, and keeps its summary
-- (which names its sets) that much longer (keys.INDEX_GRACE_S). This script takes up to a limit
-- of the workflows now past expiry and removes them from every index set. A retried (revived)
-- workflow left orch:index:expiring in its write, so it is never swept. Called by the timer
-- poller and by listings (tasks/store/inspect.py); registered by tasks/store/inspect.py and
-- tasks/store/memory.py; key names come from tasks/store/keys.py.
--
-- KEYS[1]  orch:index:expiring      zset   finished workflows by record expiry, epoch ms
-- KEYS[2]  orch:index:all           zset   every workflow by updated ms
--
-- ARGV[1]  now, epoch ms
-- ARGV[2]  most workflows to sweep
-- ARGV[3]  ARGV[4]  the text before and after <s> in the name of a workflow's summary hash
-- ARGV[5]  "orch:index:status:"   ARGV[6]  "orch:index:orch:"   ARGV[7]  "orch:index:parent:"
-- ARGV[8..]  every status (a summary already gone: the member is removed from each status set)
--
-- Index sets other than these are named from the summary; a workflow whose summary is gone too
-- (the sweep did not run within the grace period) leaves members in its orchestrator and parent
-- sets, which a listing removes when it meets them.
--
-- Returns how many workflows were swept.

local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
for _, subject in ipairs(due) do
    local summary = ARGV[3] .. subject .. ARGV[4]
    local row = redis.call("HMGET", summary, "status", "orchestrator", "version", "parent")
    redis.call("ZREM", KEYS[2], subject)
    if row[1] then
        redis.call("ZREM", ARGV[5] .. row[1], subject)
        redis.call("ZREM", ARGV[6] .. row[2], subject)
        redis.call("ZREM", ARGV[6] .. row[2] .. ":" .. row[3], subject)
        if row[4] and row[4] ~= "" then
            redis.call("ZREM", ARGV[7] .. row[4], subject)
        end
        redis.call("DEL", summary)
    else
        for i = 8, #ARGV do
            redis.call("ZREM", ARGV[5] .. ARGV[i], subject)
        end
    end
    redis.call("ZREM", KEYS[1], subject)
end
return #due
