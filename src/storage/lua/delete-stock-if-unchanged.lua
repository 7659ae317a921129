-- Deletes the cached stock only if it still holds the value the caller saw (the consistency monitor
-- dropping a cached version the primary never had, which would refuse every write-through until it
-- expires). KEYS[1] stock key; ARGV[1] the "version:stock" value seen. Returns 1 if deleted, 0 if not.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
