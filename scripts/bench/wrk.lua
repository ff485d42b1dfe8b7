-- wrk script for scripts/bench.sh. Environment:
--   BENCH_TOKEN, BENCH_WORKSPACE   credentials (none for /health/)
--   BENCH_METHOD                   GET (default) or POST
--   BENCH_BODY                     the JSON body of a POST
--   BENCH_PATH                     the path; "{id}" is replaced per request by a random id
--   BENCH_ID_MIN, BENCH_ID_MAX     the range of those ids
--   BENCH_ID_SEQUENTIAL=N          each id once, in turn, instead of at random: N is wrk's
--                                  thread count, and thread k takes min + k, min + k + N…
--   BENCH_TEST_MODE=1              the request is in test mode (x-piriod-test-mode)
-- At the end it prints one line: BENCH {"requests": …, "rps": …, "p50_ms": …, …}.

local token = os.getenv("BENCH_TOKEN")
local workspace = os.getenv("BENCH_WORKSPACE")
local path = os.getenv("BENCH_PATH") or "/"
local id_min = tonumber(os.getenv("BENCH_ID_MIN") or "1")
local id_max = tonumber(os.getenv("BENCH_ID_MAX") or "1")
local stride = tonumber(os.getenv("BENCH_ID_SEQUENTIAL") or "0")
local templated = path:find("{id}", 1, true) ~= nil
local threads = 0
local next_id = nil

wrk.method = os.getenv("BENCH_METHOD") or "GET"
if token then
  wrk.headers["Authorization"] = "Token " .. token
  wrk.headers["x-simple-workspace"] = workspace
end
if os.getenv("BENCH_TEST_MODE") == "1" then
  wrk.headers["x-piriod-test-mode"] = "true"
end
if wrk.method == "POST" then
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
end
wrk.path = path

function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
  thread:set("index", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(seed or os.time())
  next_id = id_min + (index or 0)
end

request = function()
  if templated then
    local id = math.random(id_min, id_max)
    if stride > 0 then
      id = next_id
      next_id = next_id + stride
    end
    return wrk.format(nil, (path:gsub("{id}", tostring(id))))
  end
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
