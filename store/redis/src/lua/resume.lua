-- Where a change-feed reader whose last entry was ARGV[1] goes on from after losing its connection,
-- and whether entries it had not read yet were trimmed away meanwhile (1) or not (0).
--
-- KEYS: the change stream.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function before(a, b)
  local a_ms, a_seq = parse(a)
  local b_ms, b_seq = parse(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  -- Nothing kept since Redis came back empty (or for a whole time to live): all that comes is new.
  return {'0-0', 0}
end
local reply = redis.call('XINFO', 'STREAM', KEYS[1])
local info = {}
for i = 1, #reply, 2 do
  info[reply[i]] = reply[i + 1]
end
if before(info['last-generated-id'], ARGV[1]) then
  -- A stream begun afresh (Redis came back empty) on a clock behind the old one: all of it is new.
  return {'0-0', 0}
end
local trimmed = info['entries-added'] > info['length']
  and before(ARGV[1], info['recorded-first-entry-id'])
return {ARGV[1], trimmed and 1 or 0}
