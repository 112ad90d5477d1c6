-- Run by src/store/redis.rs (its doc comment on LUA_RESOLVE lists KEYS and ARGV), after helpers.lua.
local log, ids, meta = KEYS[1], KEYS[2], KEYS[3]
local wanted, maxage = ARGV[1], tonumber(ARGV[2])
local found = newest_with_id(log, ids, wanted)
if not found then return false end
local floor = redis.call('HGET', meta, 'floor') or '0-0'
if not newer(found, floor) then return false end
if maxage > 0 and split(found) < now_ms() - maxage then return false end
return found
