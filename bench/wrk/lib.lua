-- Shared by the scenario scripts (each loads it with dofile): the token header, the count of
-- answers that are not 2xx, and one summary line for bench/run printed by done().
--
-- Every script takes its arguments after wrk's `--`: the token key first, then its own.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

non2xx = 0
sample_error = nil

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if sample_error == nil then
      sample_error = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function use_token(key)
  wrk.headers["Authorization"] = "Token " .. key
end

function json_body()
  wrk.headers["Content-Type"] = "application/json"
end

function read_file(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then
      table.insert(lines, line)
    end
  end
  return lines
end

function done(summary, latency, requests)
  local bad, sample = 0, nil
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    sample = sample or thread:get("sample_error")
  end
  local errors = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, bad, errors.connect, errors.read, errors.write,
    errors.timeout, math.floor(latency:percentile(50)), math.floor(latency:percentile(99))))
  if sample then
    io.write("BENCH_SAMPLE_ERROR " .. (string.gsub(sample, "[\r\n]+", " ")) .. "\n")
  end
end
