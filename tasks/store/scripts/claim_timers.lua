-- claim_timers.lua: take due timers of one shard out of its index, for one worker.
--
-- Any worker may call it; each due timer is handed to exactly one caller, which publishes its
-- event and then forgets the claim (release_timers). A claim older than the reclaim delay (its
-- worker died between the claim and the publish) goes back into the index and fires again; a
-- timer fired twice is harmless, its event id being fixed. Registered by tasks/store/memory.py;
-- key names come from tasks/store/keys.py (every key carries the shard's hash tag {<t>}).
--
-- The caller first reads the candidates (due members and stale claims, one pipelined read), so
-- the timer hashes of their workflows can be declared in KEYS; this script re-checks each one,
-- so a candidate claimed, cancelled or rescheduled meanwhile is left alone.
--
-- KEYS[1]    orch:{<t>}:timers           zset    "<s>|<timer id>" by due time, epoch ms
-- KEYS[2]    orch:{<t>}:timers:claimed   zset    "<s>|<timer id>" by claim time, epoch ms
-- KEYS[3..]  orch:{<t>}:wf:<s>:timers    hash    timer id -> msgpack event, one per candidate
--                                                (KEYS[2 + i] belongs to ARGV[3 + i])
--
-- ARGV[1]  now, epoch ms
-- ARGV[2]  reclaim delay, ms: claims older than this are re-queued first
-- ARGV[3]  unused (keeps the candidates aligned with their hashes)
-- ARGV[4..] the candidate members "<s>|<timer id>"
--
-- The event of a timer lives in its workflow's hash (same slot, written by write_record.lua). A
-- member whose event is gone was cancelled after it was indexed (or the workflow expired): it is
-- dropped, not returned.
--
-- Returns a flat array: member, event (msgpack), member, event, ...

local now = tonumber(ARGV[1])
local stale_before = now - tonumber(ARGV[2])
local claimed = {}
for i = 4, #ARGV do
    local member = ARGV[i]
    local claim = redis.call("ZSCORE", KEYS[2], member)
    if claim and tonumber(claim) <= stale_before then
        redis.call("ZREM", KEYS[2], member)
        redis.call("ZADD", KEYS[1], now, member)
    end
    local due = redis.call("ZSCORE", KEYS[1], member)
    if due and tonumber(due) <= now then
        redis.call("ZREM", KEYS[1], member)
        local bar = string.find(member, "|", 1, true)
        local event = redis.call("HGET", KEYS[i - 1], string.sub(member, bar + 1))
        if event then
            redis.call("ZADD", KEYS[2], now, member)
            claimed[#claimed + 1] = member
            claimed[#claimed + 1] = event
        end
    end
end
return claimed
