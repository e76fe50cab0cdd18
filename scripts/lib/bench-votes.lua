-- wrk script for `scripts/bench --keyed`: POST /vote JSON, with a fresh
-- Idempotency-Key on every request when KEYED=1 (oha cannot vary a header
-- per request). Prints one JSON line with the figures at the end.
local keyed = os.getenv("KEYED") == "1"
local body = '{"choice":"ai"}'
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local n = 0
request = function()
  local headers = { ["Content-Type"] = "application/json" }
  if keyed then
    n = n + 1
    headers["Idempotency-Key"] = "bench-" .. id .. "-" .. n
  end
  return wrk.format("POST", "/vote", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"status_errors":%d,"socket_errors":%d,"p50_ms":%.2f,"p99_ms":%.2f}\n',
    summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
