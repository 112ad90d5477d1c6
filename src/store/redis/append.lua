-- Run by src/store/redis.rs (its doc comment on LUA_APPEND lists KEYS and ARGV), after helpers.lua.
local log, ids, meta, tcount, tlast = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pcount, plast, dups = KEYS[6], KEYS[7], KEYS[8]
local hs, physmax = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxage, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local state = redis.call('HMGET', meta, 'last', 'floor', 'kept', 'trimmed', 'tallied')
retally(log, pcount, plast, state[2] or '0-0', state[1], state[5])
local last = state[1]
if not last then
  -- No bookkeeping yet (a new stream, or it was lost): continue after what the stream says.
  last = '0-0'
  if redis.call('EXISTS', log) == 1 then
    local info = redis.call('XINFO', 'STREAM', log)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
  end
end
local floor = state[2] or '0-0'
local kept = tonumber(state[3] or '0')
local trimmed = state[4] or '0-0'

local lms, ln = split(last)
local out = {}
for i = 5, #ARGV, 3 do
  if now > lms then
    lms, ln = now, 0
  elseif ln < 65535 then
    ln = ln + 1
  else
    lms, ln = lms + 1, 0
  end
  local id = fmt(lms, ln)
  -- An id used before, whose previous occurrence history still holds: index both.
  local previous = newest_with_id(log, ids, ARGV[i + 1])
  if previous and newer(previous, floor) then
    redis.call('ZADD', dups, 0, occurrence(ARGV[i + 1], previous), 0, occurrence(ARGV[i + 1], id))
  end
  redis.call('XADD', log, id, 'r', ARGV[i], 'i', ARGV[i + 1], 't', ARGV[i + 2])
  redis.call('ZADD', ids, lms, ARGV[i + 1])
  local public = not private({'r', ARGV[i]})
  for _, topic in ipairs(cjson.decode(ARGV[i + 2])) do
    redis.call('HINCRBY', tcount, topic, 1)
    redis.call('HSET', tlast, topic, ARGV[i + 1])
    if public then
      redis.call('HINCRBY', pcount, topic, 1)
      redis.call('HSET', plast, topic, ARGV[i + 1])
    end
  end
  out[#out + 1] = id
  kept = kept + 1
end
last = fmt(lms, ln)

-- Logical retention: move the floor past what history no longer holds.
local function forget(entries)
  for _, e in ipairs(entries) do
    local event_id = field(e[2], 'i')
    if event_id then redis.call('ZREM', dups, occurrence(event_id, e[1])) end
    local topics = field(e[2], 't')
    if topics then
      local public = not private(e[2])
      for _, topic in ipairs(cjson.decode(topics)) do
        if redis.call('HINCRBY', tcount, topic, -1) <= 0 then
          redis.call('HDEL', tcount, topic)
          redis.call('HDEL', tlast, topic)
        end
        -- The newest public id stays until the last public entry goes (oldest go first).
        if public and redis.call('HINCRBY', pcount, topic, -1) <= 0 then
          redis.call('HDEL', pcount, topic)
          redis.call('HDEL', plast, topic)
        end
      end
    end
    floor = e[1]
    kept = kept - 1
  end
end
kept = math.min(kept, redis.call('XLEN', log))
if kept > hs then
  local wanted = kept - hs
  local gone = redis.call('XRANGE', log, '(' .. floor, '+', 'COUNT', wanted)
  forget(gone)
  if #gone < wanted then kept = 0 end
end
if maxage > 0 and now - maxage > 0 then
  forget(redis.call('XRANGE', log, '(' .. floor, '(' .. fmt(now - maxage, 0), 'COUNT', 10000))
end

-- Physical retention: the stream is also the bus, so it keeps more than history.
local len = redis.call('XLEN', log)
if len > physmax then
  local excess = len - physmax
  local newest_gone
  if excess <= 10000 then
    local gone = redis.call('XRANGE', log, '-', '+', 'COUNT', excess)
    newest_gone = gone[#gone][1]
  end
  redis.call('XTRIM', log, 'MAXLEN', physmax)
  if not newest_gone then
    -- Too many to list: just before the first entry left (at least as new as what went).
    local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
    local fms, fn = split(first[1][1])
    if fn > 0 then newest_gone = fmt(fms, fn - 1) else newest_gone = fmt(fms - 1, 65535) end
  end
  if newer(newest_gone, trimmed) then trimmed = newest_gone end
end
if maxage > 0 and now - maxage - grace > 0 then
  local minid = fmt(now - maxage - grace, 0)
  local gone = redis.call('XREVRANGE', log, '(' .. minid, '-', 'COUNT', 1)
  if #gone > 0 then
    if newer(gone[1][1], trimmed) then trimmed = gone[1][1] end
    redis.call('XTRIM', log, 'MINID', minid)
  end
end
if newer(trimmed, floor) then
  -- Never expected (the stream keeps more than history): history starts after what is gone.
  floor = trimmed
  kept = redis.call('XLEN', log)
end

redis.call('HSET', meta, 'last', last, 'floor', floor, 'kept', kept, 'trimmed', trimmed,
  'tallied', last)
redis.call('ZREMRANGEBYSCORE', ids, '-inf', '(' .. string.format('%.0f', split(floor)))
return out
