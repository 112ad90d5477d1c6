-- Run by src/store/redis.rs (its doc comment on LUA_READ lists KEYS and ARGV), after helpers.lua.
local log, meta = KEYS[1], KEYS[2]
local after, count, maxage = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local floor = redis.call('HGET', meta, 'floor') or '0-0'
local lower = floor
if newer(after, floor) then lower = after end
return redis.call('XRANGE', log, window_start(lower, maxage, now_ms()), '+', 'COUNT', count)
