-- Renews a node's shard leases in one round trip. ARGV[1] prefix, ARGV[2] node id, ARGV[3] TTL ms,
-- ARGV[4] the leases as one string of `shard:epoch` pairs separated by spaces (one argument instead of
-- two per shard: the caller encodes its lease set once, not at every renewal).
-- Returns the shards whose lease is no longer this node's at that epoch.
local prefix, node, ttl = ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for shard, epoch in string.gmatch(ARGV[4], '(%d+):(%d+)') do
  local key = prefix .. 'shard:' .. shard
  if redis.call('GET', key) == node .. '|' .. epoch then
    redis.call('PEXPIRE', key, ttl)
  else
    lost[#lost + 1] = tonumber(shard)
  end
end
return lost
