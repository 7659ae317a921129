-- Sets the cached stock "version:stock" unless the cache already holds a newer version (an equal
-- version is rewritten: it can only correct a value, never roll it back).
-- KEYS[1] stock key; ARGV[1] version; ARGV[2] stock; ARGV[3] TTL ms; optional ARGV[4] channel and
-- ARGV[5] message, published when written (the change's announcement to the other nodes, in the same
-- round trip). Returns 1 if written, 0 if older.
local current = redis.call('GET', KEYS[1])
if current then
  local cached = tonumber(string.match(current, '^(%d+):'))
  if cached and cached > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
if ARGV[4] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
