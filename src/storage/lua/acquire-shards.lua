-- Grants free shard leases to a node. Each grant takes a new epoch from the shard's counter, which is
-- seeded from the clock when missing (after a Redis restart), so epochs keep increasing.
-- ARGV[1] key prefix, ARGV[2] node id, ARGV[3] TTL ms, ARGV[4] now ms, ARGV[5..] shard numbers.
-- Returns one epoch per shard: the new or renewed epoch, or 0 if another node holds it.
local prefix, node, ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV do
  local key = prefix .. 'shard:' .. ARGV[i]
  local current = redis.call('GET', key)
  if not current then
    local counter = prefix .. 'shard-epoch:' .. ARGV[i]
    if redis.call('EXISTS', counter) == 0 then redis.call('SET', counter, now) end
    local epoch = redis.call('INCR', counter)
    redis.call('SET', key, node .. '|' .. epoch, 'PX', ttl)
    out[#out + 1] = epoch
  elseif string.sub(current, 1, #node + 1) == node .. '|' then
    redis.call('PEXPIRE', key, ttl)
    out[#out + 1] = tonumber(string.sub(current, #node + 2))
  else
    out[#out + 1] = 0
  end
end
return out
