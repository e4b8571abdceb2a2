-- wrk script: one non-streaming chat completion per request, or, with
-- BENCH_BODY, that JSON body (another door's request).
-- BENCH_KEY empty means "talk to the mock directly" (it ignores auth).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
local key = os.getenv("BENCH_KEY") or ""
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = os.getenv("BENCH_BODY") or ('{"model":"' .. (os.getenv("BENCH_MODEL") or "gpt-4o-mini") ..
  '","messages":[{"role":"user","content":"Say hello to the benchmark."}]}')

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT rps=%.0f p50_us=%d p99_us=%d requests=%d errors=%d status=%d connect=%d read=%d write=%d timeout=%d secs=%.1f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), summary.requests, errors, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, summary.duration / 1e6))
end
