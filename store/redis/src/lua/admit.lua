-- Counts a job among its tenant's unfinished jobs if fewer than the most allowed are counted.
--
-- KEYS: the tenant's in-flight set.
-- ARGV: the job's id, the most jobs counted at once.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
