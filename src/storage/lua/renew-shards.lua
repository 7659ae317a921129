-- Renews a node's shard leases in one round trip. ARGV[1] prefix, ARGV[2] node id, ARGV[3] TTL ms,
-- then pairs (shard, epoch). Returns the shards whose lease is no longer this node's at that epoch.
local prefix, node, ttl = ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for i = 4, #ARGV, 2 do
  local key = prefix .. 'shard:' .. ARGV[i]
  if redis.call('GET', key) == node .. '|' .. ARGV[i + 1] then
    redis.call('PEXPIRE', key, ttl)
  else
    lost[#lost + 1] = tonumber(ARGV[i])
  end
end
return lost
