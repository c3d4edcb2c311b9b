-- publish_and_release.lua: the tail of a fused step, run after write_record.lua in the same call.
--
-- Not a script of its own: tasks/store/memory.py composes write_record.lua (as a local function)
-- and this file into one script, which runs this part only when the write succeeded; `written`
-- is write_record's reply {1, new_version}. On one plain Redis that is both the broker and the
-- state, an orchestrator step's state write, the publication of its events and the release of its
-- lock are then one atomic call: no window in which the state is written but the events are not
-- published, so the step needs no outbox second phase (and costs 2 round trips, not 4).
--
-- Its inputs do not touch write_record's KEYS/ARGV layout: everything is in the LAST argument,
-- ARGV[#ARGV], a msgpack array (key names built by tasks/store/keys.py, queue keys by kombu):
--   [1] commands: {{name, arg, ...}, ...}: the exact Redis commands kombu's publish batch would
--       have pipelined for the step's messages (LPUSH of each envelope to its queue list, the
--       transport's wake-up signal LPUSH + LTRIM, the PUBLISH of Celery's task-sent event), then
--       the XADDs of the events for the external outbox streams. Only the commands named in
--       `allowed` run.
--   [2] lock:orch:{<s>}            the lock (write_record checked that the lease holds it)
--   [3] lock-signal:orch:{<s>}     python-redis-lock's wake-up signal list
--   [4] signal expiry, milliseconds
--   [5] orch:{<s>}:outbox          the step outbox hash
--   [6] id of the event being applied
--   [7] the step's outbox blob (msgpack list of events), what a plain write would have stored
--
-- The single-Redis condition is why the queue and stream keys are arguments rather than KEYS:
-- the runtime fuses a step only when broker and state are one non-cluster Redis.
--
-- If a command fails (a queue key of the wrong type...), Redis does not undo what ran before it:
-- the step's events are then kept in the outbox hash exactly as a plain write keeps them, the lock
-- is left to the caller's release, and {-3, new_version} tells it to retry; the retry finds the
-- event consumed and publishes the outbox the ordinary way (at least once, as always). Otherwise
-- the lock is released exactly as release_lock.lua releases it, and {1, new_version} returned.

local fused = cmsgpack.unpack(ARGV[#ARGV])
local allowed = {lpush = true, ltrim = true, pexpire = true, publish = true, xadd = true}
local failure = nil
for _, command in ipairs(fused[1]) do
    if not allowed[string.lower(command[1])] then
        failure = "command not allowed in a fused step: " .. command[1]
        break
    end
    local reply = redis.pcall(unpack(command))
    if type(reply) == "table" and reply.err then
        failure = reply.err
        break
    end
end
if failure then
    redis.log(redis.LOG_WARNING, "fused step publication failed, events kept in the outbox: " .. failure)
    redis.call("HSET", fused[5], fused[6], fused[7])
    return {-3, written[2]}
end
redis.call("DEL", fused[3])
redis.call("LPUSH", fused[3], 1)
redis.call("PEXPIRE", fused[3], fused[4])
redis.call("DEL", fused[2])
return written
