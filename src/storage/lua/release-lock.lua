-- Deletes a lock only if this holder still owns it (its token), so a late release cannot free another's lock.
-- KEYS[1] lock key; ARGV[1] token. Returns 1 if released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
