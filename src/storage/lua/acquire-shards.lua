-- Grants free shard leases to a node. Each grant takes a new epoch: one past the shard's last epoch, and
-- at least the current time in ms. The clock floor keeps epochs increasing when Redis forgets the last
-- one: a restart without it, or a Sentinel failover that promoted a replica the last grant had not reached
-- yet (a grant made at time t has epoch >= t, and any later grant is made later: epoch > t).
-- ARGV[1] key prefix, ARGV[2] node id, ARGV[3] TTL ms, ARGV[4] now ms, ARGV[5..] shard numbers.
-- Returns one epoch per shard: the new or renewed epoch, or 0 if another node holds it.
local prefix, node, ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV do
  local key = prefix .. 'shard:' .. ARGV[i]
  local current = redis.call('GET', key)
  if not current then
    local counter = prefix .. 'shard-epoch:' .. ARGV[i]
    local epoch = math.max(tonumber(redis.call('GET', counter) or '0') + 1, tonumber(now))
    local text = string.format('%d', epoch)
    redis.call('SET', counter, text)
    redis.call('SET', key, node .. '|' .. text, 'PX', ttl)
    out[#out + 1] = epoch
  elseif string.sub(current, 1, #node + 1) == node .. '|' then
    redis.call('PEXPIRE', key, ttl)
    out[#out + 1] = tonumber(string.sub(current, #node + 2))
  else
    out[#out + 1] = 0
  end
end
return out
