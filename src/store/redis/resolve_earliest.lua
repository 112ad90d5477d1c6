-- Run by src/store/redis.rs (its doc comment on LUA_RESOLVE_EARLIEST lists KEYS and ARGV), after helpers.lua.
local log, ids, meta, dups = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local wanted, after, maxage = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lower = redis.call('HGET', meta, 'floor') or '0-0'
if newer(after, lower) then lower = after end
local cutoff = nil
if maxage > 0 then
  cutoff = now_ms() - maxage
  -- Start the scan at the age limit too, so occurrences that aged out (but are not forgotten
  -- until the next append) cannot fill the page below.
  local aged = fmt(cutoff - 1, 65535)
  if newer(aged, lower) then lower = aged end
end
local function fresh(entry)
  return newer(entry, lower) and ((not cutoff) or split(entry) >= cutoff)
end
local found = false
local members = redis.call('ZRANGEBYLEX', dups, '(' .. occurrence(wanted, lower),
  '(' .. wanted .. '\1', 'LIMIT', 0, 64)
for _, member in ipairs(members) do
  local entry = string.sub(member, #wanted + 2)
  local ms, n = string.match(entry, '^0*(%d+)-0*(%d+)$')
  if ms then
    entry = ms .. '-' .. n
    if fresh(entry) then found = entry break end
  end
end
local newest = newest_with_id(log, ids, wanted)
if newest and fresh(newest) and ((not found) or newer(found, newest)) then found = newest end
return found
