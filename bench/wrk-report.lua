-- wrk script of the `reads` scenario (bench/scenarios/reads.ts). With READS_PATHS="/a /b ..." in the
-- environment, the requests cycle through those paths (one pre-built request each, so a request costs wrk
-- one Lua call and no formatting); without it wrk sends the URL's path as a static request. At the end, one
-- line `WRK_JSON {...}` with the exact counts and latency percentiles (µs) for the bench to parse.

local paths = {}
for p in string.gmatch(os.getenv("READS_PATHS") or "", "%S+") do
  paths[#paths + 1] = p
end

if #paths > 1 then
  local requests = {}
  local i = 0
  function init(args)
    for k, p in ipairs(paths) do
      requests[k] = wrk.format(nil, p)
    end
  end
  function request()
    i = i % #requests + 1
    return requests[i]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"bytes":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
