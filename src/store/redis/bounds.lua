-- Run by src/store/redis.rs (its doc comment on LUA_BOUNDS lists KEYS and ARGV), after helpers.lua.
local log, meta = KEYS[1], KEYS[2]
local maxage = tonumber(ARGV[1])
local state = redis.call('HMGET', meta, 'last', 'floor')
local last = state[1] or '0-0'
local start = window_start(state[2] or '0-0', maxage, now_ms())
local out = {last}
local first = redis.call('XRANGE', log, start, '+', 'COUNT', 1)
if #first > 0 then
  local newest = redis.call('XREVRANGE', log, '+', start, 'COUNT', 1)
  out[2] = first[1][1]
  out[3] = field(first[1][2], 'i') or ''
  out[4] = newest[1][1]
  out[5] = field(newest[1][2], 'i') or ''
end
return out
