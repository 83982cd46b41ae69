-- wrk script of the http benchmark group (benchmarks/groups/http.py).
--
--   wrk -t1 -c8 -d4s -s benchmarks/http_pages.lua http://127.0.0.1:PORT -- /page/ 200
--
-- Requests go to <prefix>0/ .. <prefix>(count-1)/ in turn, so every page is asked for once
-- per <count> requests whatever the number of connections, and the end of the run prints
-- one machine-readable line (the group parses it rather than wrk's text report).

local paths = {}
local nxt = 1

function init(args)
  local prefix = args[1] or "/page/"
  local count = tonumber(args[2] or "200")
  -- The requests are formatted once here: request() runs for every request sent.
  for n = 0, count - 1 do
    paths[#paths + 1] = wrk.format("GET", prefix .. n .. "/")
  end
end

function request()
  local r = paths[nxt]
  nxt = nxt % #paths + 1
  return r
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
