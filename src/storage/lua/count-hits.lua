-- Fixed-window counters of many keys in one call (the per-user purchase limit, one call per batch).
-- KEYS[i]: a counter; ARGV[1]: the window, ms; ARGV[i + 1]: hits to add to KEYS[i].
-- A window starts at a key's first hit (SET NX with the window as TTL). Returns count, pttl per key.
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'PX', ARGV[1], 'NX')
  out[2 * i - 1] = redis.call('INCRBY', key, ARGV[i + 1])
  out[2 * i] = redis.call('PTTL', key)
end
return out
