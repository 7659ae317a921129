-- Releases a node's shard leases (only those still held at the given epoch).
-- ARGV[1] prefix, ARGV[2] node id, then pairs (shard, epoch). Returns how many were released.
local prefix, node = ARGV[1], ARGV[2]
local released = 0
for i = 3, #ARGV, 2 do
  local key = prefix .. 'shard:' .. ARGV[i]
  if redis.call('GET', key) == node .. '|' .. ARGV[i + 1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
