-- battlement GCRA: decides every limit of one request in one call; all pass and are charged,
-- or none is. KEYS[i]: the bucket of limit i. ARGV[3i-2], ARGV[3i-1], ARGV[3i]: the emission
-- interval (ns), the capacity (emission x burst, ns) and the cost of limit i.
-- Returns {status, index, retry_after_us, remaining_1, reset_us_1, ...}: status 0 allowed,
-- 1 denied (index: the limit with the longest wait), 2 cost above the burst of limit `index`.
-- Time is Redis's own (TIME), in microseconds since 2023-11-14, so that every instance shares
-- one clock and doubles keep sub-microsecond precision for decades. Stored arrival times are
-- on that scale; keys expire (PX) when their bucket is full again.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local n = #KEYS
local tat, T, L, inc = {}, {}, {}, {}
local status, index, worst = 0, 0, 0
for i = 1, n do
  local e = tonumber(ARGV[3 * i - 2])
  T[i] = e / 1000
  L[i] = tonumber(ARGV[3 * i - 1]) / 1000
  -- cost x emission in ns first: exact when it equals the capacity, as in the Rust store.
  inc[i] = tonumber(ARGV[3 * i]) * e / 1000
  local v = redis.call('GET', KEYS[i])
  local x = v and tonumber(v) or now
  if x < now then x = now end
  tat[i] = x
  -- 0.1 us of slack (here and below) absorbs floating-point rounding.
  if inc[i] > L[i] + 0.1 then
    if status ~= 2 then status = 2; index = i - 1 end
  elseif status ~= 2 then
    local over = x + inc[i] - now - L[i]
    if over > 0.1 and over > worst then status = 1; index = i - 1; worst = over end
  end
end
local out = {status, index, math.ceil(worst)}
for i = 1, n do
  local x = tat[i]
  if status == 0 then
    x = x + inc[i]
    if x > now then
      redis.call('SET', KEYS[i], string.format('%.3f', x), 'PX', math.ceil((x - now) / 1000) + 1)
    end
  end
  local ahead = x - now
  local rem = math.floor((L[i] - ahead) / T[i] + 0.000001)
  if rem < 0 then rem = 0 end
  out[#out + 1] = rem
  out[#out + 1] = math.ceil(ahead)
end
return out
