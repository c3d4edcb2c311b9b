-- sweep_index.lua: remove from one shard's search index the workflows whose keys have expired.
--
-- Redis expires keys, not members of sorted sets: a finished workflow's record, history and
-- summary expire together, but its subject stays in the index sets. write_record.lua lists
-- every finished workflow in its shard's index:expiring set, scored by when its keys expire,
-- under a member that names the sets holding it: "<s>|<status>|<orchestrator>|<version>|<parent>".
-- The caller reads the due members first and declares the sets they name in KEYS; this script
-- re-checks each member is still due (a retried, revived workflow left index:expiring in its
-- write, so it is never swept) and removes its subject from those sets. Called by the timer
-- poller and by listings (tasks/store/index.py); key names come from tasks/store/keys.py, every
-- one with the shard's hash tag {<t>}.
--
-- KEYS[1]    orch:{<t>}:index:expiring      zset   finished workflows by expiry, epoch ms
-- KEYS[2]    orch:{<t>}:index:all           zset   the shard's workflows by updated ms
-- KEYS[3..]  the status, orchestrator, orchestrator version and parent sets named by the members
--
-- ARGV[1]  now, epoch ms
-- ARGV[2..] per member, a group: the member, its subject, how many sets n, then n indexes
--          into KEYS of the sets holding it
--
-- Returns how many workflows were swept.

local now = tonumber(ARGV[1])
local swept = 0
local i = 2
while i <= #ARGV do
    local member, subject, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local score = redis.call("ZSCORE", KEYS[1], member)
    if score and tonumber(score) <= now then
        redis.call("ZREM", KEYS[2], subject)
        for j = 1, n do
            redis.call("ZREM", KEYS[tonumber(ARGV[i + 2 + j])], subject)
        end
        redis.call("ZREM", KEYS[1], member)
        swept = swept + 1
    end
    i = i + 3 + n
end
return swept
