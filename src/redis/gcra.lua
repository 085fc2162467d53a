-- battlement GCRA: decides every limit of one request in one call; all pass and are charged,
-- or none is. KEYS[k]: the hash of one identity (all the limits counting that identity, one
-- field each). ARGV[1]: the number of checks n; then five per check i: the index of its key
-- in KEYS, its field, the emission interval (ns), the capacity (emission x burst, ns) and the
-- cost.
-- Returns {status, index, retry_after_us, remaining_1, reset_us_1, ...}: status 0 allowed,
-- 1 denied (index: the limit with the longest wait), 2 cost above the burst of limit `index`.
-- Time is Redis's own (TIME), in microseconds since 2023-11-14, so that every instance shares
-- one clock and doubles keep sub-microsecond precision for decades. Stored arrival times are
-- on that scale; a hash expires (PX) when the fullest of its buckets is full again.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local K, F, tat, T, L, inc = {}, {}, {}, {}, {}, {}
local status, index, worst = 0, 0, 0
for i = 1, n do
  local b = 1 + 5 * (i - 1)
  K[i] = KEYS[tonumber(ARGV[b + 1])]
  F[i] = ARGV[b + 2]
  local e = tonumber(ARGV[b + 3])
  T[i] = e / 1000
  L[i] = tonumber(ARGV[b + 4]) / 1000
  -- cost x emission in ns first: exact when it equals the capacity, as in the Rust store.
  inc[i] = tonumber(ARGV[b + 5]) * e / 1000
  local v = redis.call('HGET', K[i], F[i])
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
      redis.call('HSET', K[i], F[i], string.format('%.3f', x))
      local need = math.ceil((x - now) / 1000) + 1
      if redis.call('PTTL', K[i]) < need then redis.call('PEXPIRE', K[i], need) end
    end
  end
  local ahead = x - now
  local rem = math.floor((L[i] - ahead) / T[i] + 0.000001)
  if rem < 0 then rem = 0 end
  out[#out + 1] = rem
  out[#out + 1] = math.ceil(ahead)
end
return out
