-- One ownership tick in one round trip: this node's heartbeat and address, the renewal of its shard
-- leases, and who is alive.
-- ARGV[1] key prefix, ARGV[2] node id, ARGV[3] TTL ms, ARGV[4] now ms, ARGV[5] this node's address,
-- ARGV[6] the least heartbeat score of a live node (now - TTL), ARGV[7] heartbeats older than this are
-- deleted (now - 10 TTL), ARGV[8] the leases as `shard:epoch` pairs separated by spaces, ARGV[9] '1' to
-- return every node's address too.
-- Returns {lost shards, {node, heartbeat, node, heartbeat, …} of the live nodes, {node, address, …} or {}}.
local prefix, node, ttl = ARGV[1], ARGV[2], ARGV[3]
local nodesKey, addrKey = prefix .. 'nodes', prefix .. 'node-addr'
redis.call('ZADD', nodesKey, ARGV[4], node)
redis.call('HSET', addrKey, node, ARGV[5])
redis.call('ZREMRANGEBYSCORE', nodesKey, '-inf', ARGV[7])
local lost = {}
for shard, epoch in string.gmatch(ARGV[8], '(%d+):(%d+)') do
  local key = prefix .. 'shard:' .. shard
  local current = redis.call('GET', key)
  if current == node .. '|' .. epoch then
    redis.call('PEXPIRE', key, ttl)
  elseif not current and tonumber(redis.call('GET', prefix .. 'shard-epoch:' .. shard) or '0') <= tonumber(epoch) then
    -- Expired while Redis was out of reach (or lost in a failover), and nobody was granted the shard
    -- since (no later epoch): it is still this node's, under the same epoch.
    redis.call('SET', key, node .. '|' .. epoch, 'PX', ttl)
    redis.call('SET', prefix .. 'shard-epoch:' .. shard, epoch)
  else
    lost[#lost + 1] = tonumber(shard)
  end
end
local live = redis.call('ZRANGEBYSCORE', nodesKey, ARGV[6], '+inf', 'WITHSCORES')
local addresses = {}
if ARGV[9] == '1' then addresses = redis.call('HGETALL', addrKey) end
return {lost, live, addresses}
