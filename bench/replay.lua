-- wrk script: replay pre-built raw HTTP requests in a cycle, then write the results as JSON.
--
-- BENCH_REQUESTS names a file of requests, each as "<length>\n<bytes>" (written by
-- bench/signing.py, already SigV4-signed); BENCH_RESULT names the JSON file `done` writes.
-- Threads start at different offsets so that no two send the same request at once.

local requests_path = os.getenv("BENCH_REQUESTS")
local result_path = os.getenv("BENCH_RESULT")
local pool = {}
local count = 0
local index = 0
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local file = assert(io.open(requests_path, "rb"))
  while true do
    local header = file:read("*l")
    if not header then break end
    count = count + 1
    pool[count] = file:read(tonumber(header))
  end
  file:close()
  assert(count > 0, "no requests in " .. requests_path)
  -- thread_id is set by setup before init runs
  index = ((thread_id or 0) * 7919) % count
end

function request()
  index = index % count + 1
  return pool[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  local file = assert(io.open(result_path, "w"))
  file:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
  file:close()
end
