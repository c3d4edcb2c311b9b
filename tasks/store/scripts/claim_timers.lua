-- claim_timers.lua: take the due timers of every workflow out of the index, for one worker.
--
-- Any worker may call it; each due timer is handed to exactly one caller, which publishes its
-- event and then forgets the claim (release_timers). A claim older than the reclaim delay (its
-- worker died between the claim and the publish) goes back into the index and fires again; a
-- timer fired twice is harmless, its event id being fixed. Registered by tasks/store/memory.py;
-- key names come from tasks/store/keys.py.
--
-- KEYS[1]  orch:timers           zset    "<s>|<timer id>" by due time, epoch ms
-- KEYS[2]  orch:timers:claimed   zset    "<s>|<timer id>" by claim time, epoch ms
--
-- ARGV[1]  now, epoch ms
-- ARGV[2]  most timers to claim
-- ARGV[3]  reclaim delay, ms: claims older than this are re-queued first
-- ARGV[4]  ARGV[5]  the text before and after <s> in the name of a workflow's timer hash
--
-- The event of a timer lives in its workflow's hash orch:{<s>}:timers (same slot as the
-- workflow's record, written by write_record.lua). A member whose event is gone was cancelled
-- after it was indexed: it is dropped, not returned.
--
-- Returns a flat array: member, event (msgpack), member, event, ...

local now = tonumber(ARGV[1])
local stale = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now - tonumber(ARGV[3]))
for _, member in ipairs(stale) do
    redis.call("ZREM", KEYS[2], member)
    redis.call("ZADD", KEYS[1], now, member)
end

local claimed = {}
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
    redis.call("ZREM", KEYS[1], member)
    local bar = string.find(member, "|", 1, true)
    local subject = string.sub(member, 1, bar - 1)
    local event = redis.call("HGET", ARGV[4] .. subject .. ARGV[5], string.sub(member, bar + 1))
    if event then
        redis.call("ZADD", KEYS[2], now, member)
        claimed[#claimed + 1] = member
        claimed[#claimed + 1] = event
    end
end
return claimed
