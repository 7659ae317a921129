-- Takes a dead node out of the cluster before its leases expire. The caller found its internal port
-- refusing connections (no process listens there); this script adds the second condition: its last
-- heartbeat is at least ARGV[3] ms old. A node that left gracefully has no heartbeat entry and hands
-- its shards off itself: it is left alone.
-- ARGV[1] key prefix, ARGV[2] node id, ARGV[3] least silence ms, ARGV[4] now ms, ARGV[5] shard count.
-- Returns the number of shard leases freed, or -1 when the node is not (or no longer) evictable.
local prefix, node = ARGV[1], ARGV[2]
local silence, now, shards = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local seen = redis.call('ZSCORE', prefix .. 'nodes', node)
if not seen or now - tonumber(seen) < silence then return -1 end
redis.call('ZREM', prefix .. 'nodes', node)
redis.call('HDEL', prefix .. 'node-addr', node)
local mark = node .. '|'
local freed = 0
for shard = 0, shards - 1 do
  local key = prefix .. 'shard:' .. shard
  local current = redis.call('GET', key)
  if current and string.sub(current, 1, #mark) == mark then
    redis.call('DEL', key)
    freed = freed + 1
  end
end
return freed
