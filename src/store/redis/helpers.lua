-- Shared by every script of src/store/redis.rs, which puts this file in front of each one.
local function split(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function fmt(ms, n)
  return string.format('%.0f-%.0f', ms, n)
end
local function newer(a, b)
  local am, an = split(a)
  local bm, bn = split(b)
  return am > bm or (am == bm and an > bn)
end
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Is the entry private? The record's flags byte (after format u8 and published_at u64 LE) has
-- bit 1 set. An entry without a readable record counts as private: never shown to everyone.
local function private(fields)
  local record = field(fields, 'r')
  local flags = record and string.byte(record, 10)
  return (not flags) or flags % 2 == 1
end
-- Recounts the public tallies from the entries after `floor` (history), unless `tallied` says
-- they are up to date with `last`. Returns the new `tallied`.
local function retally(log, pcount, plast, floor, last, tallied)
  if (not last) or tallied == last then return tallied end
  redis.call('DEL', pcount, plast)
  local from = '(' .. floor
  while true do
    local page = redis.call('XRANGE', log, from, '+', 'COUNT', 1000)
    for _, e in ipairs(page) do
      local topics = field(e[2], 't')
      if topics and not private(e[2]) then
        local id = field(e[2], 'i') or ''
        for _, topic in ipairs(cjson.decode(topics)) do
          redis.call('HINCRBY', pcount, topic, 1)
          redis.call('HSET', plast, topic, id)
        end
      end
    end
    if #page < 1000 then break end
    from = '(' .. page[#page][1]
  end
  return last
end
-- The stream id of the newest entry carrying event id `wanted` (the `ids` score is its
-- millisecond), or false.
local function newest_with_id(log, ids, wanted)
  local score = redis.call('ZSCORE', ids, wanted)
  if not score then return false end
  local ms = tonumber(score)
  local found = false
  for _, e in ipairs(redis.call('XRANGE', log, fmt(ms, 0), fmt(ms, 65535))) do
    if field(e[2], 'i') == wanted then found = e[1] end
  end
  return found
end
-- The `duplicate-ids` member of the occurrence of event id `id` at stream id `entry`.
local function occurrence(id, entry)
  local ms, n = split(entry)
  return id .. '\0' .. string.format('%015.0f-%05.0f', ms, n)
end
-- The first id history holds: after `lower` (exclusive) and, with an age limit, not older
-- than it (inclusive). An XRANGE start.
local function window_start(lower, maxage, now)
  if maxage > 0 then
    local cutoff = now - maxage
    if cutoff > split(lower) then return fmt(cutoff, 0) end
  end
  return '(' .. lower
end
