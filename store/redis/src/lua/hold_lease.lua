-- Takes or renews a lease on a running job, unless another holder's lease is live.
--
-- KEYS: the job's lease.
-- ARGV: the holder, the lease's length in ms.
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
