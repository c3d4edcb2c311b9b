-- reserve.lua: take one message out of a consumer's queues into kombu's unacked bookkeeping.
--
-- Used by the reliable Redis transport (tasks/worker/kombu_redis.py) on the *broker* Redis:
-- the pop and the unacked write are one atomic call, so a consumer SIGKILLed at any point
-- leaves the message covered by kombu's restore sweep. Queue items that are not kombu
-- envelopes are dead-lettered instead of returned. Registered once per consuming connection
-- (SCRIPT LOAD, then EVALSHA); key names come from kombu and tasks/store/keys.py.
--
-- Pop the first message of KEYS[1..n] into the unacked hash/zset; dead-letter non-envelopes.
--
-- KEYS[1..n]   queue keys, in the order kombu's BRPOP would try them
-- KEYS[n+1]    unacked hash (delivery tag -> JSON [message, exchange, routing key])
-- KEYS[n+2]    unacked_index zset (delivery tag -> time of reservation)
-- KEYS[n+3]    dead-letter stream
-- KEYS[n+4..]  signal lists of the queues, deleted when every queue is empty
-- ARGV[1]      n;  ARGV[2] now (seconds, float);  ARGV[3] dead-letter MAXLEN (~);  ARGV[4] bytes kept
--
-- Returns {queue key, message}; "again" after refusing 100 items (call again); false when empty. The unacked value is built from the raw item text, so
-- kombu's restore re-publishes exactly the bytes that were queued.
local n = tonumber(ARGV[1])
local unacked, index, letters = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3]
local function hex(s)
    return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local refused = 0
for i = 1, n do
    while true do
        local item = redis.call('RPOP', KEYS[i])
        if not item then break end
        local ok, message = pcall(cjson.decode, item)
        local props = ok and type(message) == 'table' and message['properties']
        local tag = type(props) == 'table' and props['delivery_tag']
        if type(tag) == 'string' and tag ~= '' then
            local info = type(props['delivery_info']) == 'table' and props['delivery_info'] or {}
            redis.call('ZADD', index, ARGV[2], tag)
            redis.call('HSET', unacked, tag, '[' .. item .. ',' .. cjson.encode(info['exchange'] or '')
                .. ',' .. cjson.encode(info['routing_key'] or '') .. ']')
            return {KEYS[i], item}
        end
        local kept = string.sub(item, 1, tonumber(ARGV[4]))
        local payload = cmsgpack.pack({queue = KEYS[i], body_hex = hex(kept), body_length = #item})
        redis.call('XADD', letters, 'MAXLEN', '~', ARGV[3], '*', 'reason', 'undecodable-envelope',
            'error', 'queue item is not a kombu message envelope (JSON object with properties.delivery_tag)',
            'payload', payload, 'at', ARGV[2], 'task_id', '')
        refused = refused + 1
        if refused >= 100 then return 'again' end  -- bound the work of one call
    end
end
for i = n + 4, #KEYS do redis.call('DEL', KEYS[i]) end
return false
