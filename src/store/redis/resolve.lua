-- Run by src/store/redis.rs (its doc comment on LUA_RESOLVE lists KEYS and ARGV), after helpers.lua.
local log, ids, meta = KEYS[1], KEYS[2], KEYS[3]
local wanted, maxage = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', ids, wanted)
if not score then return false end
local ms = tonumber(score)
local found = false
for _, e in ipairs(redis.call('XRANGE', log, fmt(ms, 0), fmt(ms, 65535))) do
  if field(e[2], 'i') == wanted then found = e[1] end
end
if not found then return false end
local floor = redis.call('HGET', meta, 'floor') or '0-0'
if not newer(found, floor) then return false end
if maxage > 0 and ms < now_ms() - maxage then return false end
return found
