-- Counts a job among its tenant's unfinished jobs if fewer than the most allowed are counted.
--
-- KEYS: the tenant's in-flight set.
-- ARGV: the job's id, the most jobs counted at once.
-- Returns how many are counted, the job among them, or 0 when it is refused.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
  end
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
