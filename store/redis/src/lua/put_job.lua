-- Keeps a job snapshot only if it supersedes the cached one (`Job::supersedes`: a newer version, and
-- the cached snapshot not terminal), and appends it to the change stream in the same step, so that
-- every reader sees a job's versions in the order they were kept. A terminal snapshot also takes
-- the job out of its tenant's unfinished jobs.
--
-- KEYS: the job's hash, the change stream, the tenant's in-flight set.
-- ARGV: version, terminal (1 or 0), the job as JSON, time to live in ms, entries the stream keeps,
--       the job's id, whether the stream entry carries the JSON (1) or names the job (0): a large
--       job is read from its hash by the feed, so the stream's size stays bounded.
local cached = redis.call('HMGET', KEYS[1], 'version', 'terminal')
if cached[1] and (tonumber(cached[1]) >= tonumber(ARGV[1]) or cached[2] == '1') then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'terminal', ARGV[2], 'json', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'job', ARGV[3])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[6], 'version', ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[6])
end
return 1
