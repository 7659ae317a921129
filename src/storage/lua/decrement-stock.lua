-- The specification's layer 4: atomically decrement the cached stock if it covers the quantity.
-- KEYS[1] stock key "version:stock"; ARGV[1] quantity; ARGV[2] new version; ARGV[3] TTL ms.
-- Returns the new stock, -1 if the cached stock is lower than the quantity, -2 if nothing is cached.
local current = redis.call('GET', KEYS[1])
if not current then return -2 end
local stock = tonumber(string.match(current, ':(%d+)$'))
if stock < tonumber(ARGV[1]) then return -1 end
local left = stock - tonumber(ARGV[1])
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. left, 'PX', ARGV[3])
return left
