-- sweep_index.lua: remove from the search index the workflows whose keys have expired.
--
-- Redis expires keys, not members of sorted sets: a finished workflow's record, history and
-- summary expire together, but its subject stays in the index sets. write_record.lua lists
-- every finished workflow in orch:index:expiring, scored by when its keys expire, under a
-- member that names the sets holding it: "<s>|<status>|<orchestrator>|<version>|<parent>".
-- This script takes up to a limit of the members now due and removes each subject from those
-- sets. A retried (revived) workflow left orch:index:expiring in its write, so it is never
-- swept. Called by the timer poller and by listings (tasks/store/index.py); key names come
-- from tasks/store/keys.py.
--
-- KEYS[1]  orch:index:expiring      zset   finished workflows by expiry, epoch ms
-- KEYS[2]  orch:index:all           zset   every workflow by updated ms
--
-- ARGV[1]  now, epoch ms
-- ARGV[2]  most workflows to sweep
-- ARGV[3]  "orch:index:status:"   ARGV[4]  "orch:index:orch:"   ARGV[5]  "orch:index:parent:"
-- ARGV[6]  "|": the separator of a member's fields (never in a subject, a name or a version)
--
-- Returns how many workflows were swept.

local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
local sep = ARGV[6]
for _, member in ipairs(due) do
    local fields = {}
    local start = 1
    while true do
        local found = string.find(member, sep, start, true)
        if not found then
            table.insert(fields, string.sub(member, start))
            break
        end
        table.insert(fields, string.sub(member, start, found - 1))
        start = found + 1
    end
    local subject, status, orchestrator, version, parent = fields[1], fields[2], fields[3], fields[4], fields[5]
    redis.call("ZREM", KEYS[2], subject)
    redis.call("ZREM", ARGV[3] .. status, subject)
    redis.call("ZREM", ARGV[4] .. orchestrator, subject)
    redis.call("ZREM", ARGV[4] .. orchestrator .. ":" .. version, subject)
    if parent and parent ~= "" then
        redis.call("ZREM", ARGV[5] .. parent, subject)
    end
    redis.call("ZREM", KEYS[1], member)
end
return #due
