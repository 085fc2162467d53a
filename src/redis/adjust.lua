-- battlement GCRA adjustment after the response: charges ARGV[1] more units (a refund when
-- negative) to every key; ARGV[i + 1] is the emission interval (ns) of KEYS[i]. A refund never
-- makes a bucket fuller than full. Same clock and scale as gcra.lua.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  local T = tonumber(ARGV[i + 1]) / 1000
  local v = redis.call('GET', KEYS[i])
  local x = v and tonumber(v) or now
  if x < now then x = now end
  x = x + delta * T
  if x > now then
    redis.call('SET', KEYS[i], string.format('%.3f', x), 'PX', math.ceil((x - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 0
