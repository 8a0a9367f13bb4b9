-- Ends a lease on a running job, if the holder holds it.
--
-- KEYS: the job's lease.
-- ARGV: the holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
