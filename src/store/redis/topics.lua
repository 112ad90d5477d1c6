-- Run by src/store/redis.rs (its doc comment on LUA_TOPICS lists KEYS and ARGV), after helpers.lua.
local log, meta, tcount, tlast, pcount, plast = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local maxage = tonumber(ARGV[1])
local state = redis.call('HMGET', meta, 'last', 'floor', 'tallied')
local floor = state[2] or '0-0'
local tallied = retally(log, pcount, plast, floor, state[1], state[3])
if tallied and tallied ~= state[3] then redis.call('HSET', meta, 'tallied', tallied) end
local aged, aged_public = {}, {}
if maxage > 0 then
  local cutoff = now_ms() - maxage
  if cutoff > split(floor) then
    local from, upto = '(' .. floor, '(' .. fmt(cutoff, 0)
    while true do
      local page = redis.call('XRANGE', log, from, upto, 'COUNT', 1000)
      for _, e in ipairs(page) do
        local topics = field(e[2], 't')
        if topics then
          local public = not private(e[2])
          for _, topic in ipairs(cjson.decode(topics)) do
            aged[topic] = (aged[topic] or 0) + 1
            if public then aged_public[topic] = (aged_public[topic] or 0) + 1 end
          end
        end
      end
      if #page < 1000 then break end
      from = '(' .. page[#page][1]
    end
  end
end
local out = {}
local counts = redis.call('HGETALL', tcount)
for i = 1, #counts, 2 do
  local topic = counts[i]
  local events = tonumber(counts[i + 1]) - (aged[topic] or 0)
  if events > 0 then
    local public = tonumber(redis.call('HGET', pcount, topic) or '0') - (aged_public[topic] or 0)
    local public_last = ''
    if public > 0 then
      public_last = redis.call('HGET', plast, topic) or ''
    else
      public = 0
    end
    out[#out + 1] = topic
    out[#out + 1] = string.format('%.0f', events)
    out[#out + 1] = redis.call('HGET', tlast, topic) or ''
    out[#out + 1] = string.format('%.0f', public)
    out[#out + 1] = public_last
  end
end
return out
