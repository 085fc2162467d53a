-- battlement GCRA adjustment: charges ARGV[1] more units (a refund when negative) to every
-- check; then three per check: the index of its key (an identity's hash) in KEYS, its field
-- and its emission interval (ns). A refund never makes a bucket fuller than full (the field
-- goes). Same clock, scale and expiry as gcra.lua.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
local n = (#ARGV - 1) / 3
for i = 1, n do
  local b = 1 + 3 * (i - 1)
  local k = KEYS[tonumber(ARGV[b + 1])]
  local f = ARGV[b + 2]
  local T = tonumber(ARGV[b + 3]) / 1000
  local v = redis.call('HGET', k, f)
  local x = v and tonumber(v) or now
  if x < now then x = now end
  x = x + delta * T
  if x > now then
    redis.call('HSET', k, f, string.format('%.3f', x))
    local need = math.ceil((x - now) / 1000) + 1
    if redis.call('PTTL', k) < need then redis.call('PEXPIRE', k, need) end
  else
    redis.call('HDEL', k, f)
  end
end
return 0
