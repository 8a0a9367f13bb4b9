-- One step of the generic cell rate algorithm, the same as `conveyor_store::gcra`, on Redis's
-- clock so that every replica agrees on the time.
--
-- KEYS: the key's theoretical arrival time (microseconds).
-- ARGV: the interval one request uses up, the tolerance (interval × burst), both in microseconds.
-- Returns: allowed (1 or 0), remaining, reset (µs), retry after (µs).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local next = tat + interval
local ahead = next - now
if ahead > tolerance then
  return {0, 0, tat - now, ahead - tolerance}
end
-- '%.0f': Lua would print a number this large in exponent notation and lose its last digits.
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / interval), ahead, 0}
