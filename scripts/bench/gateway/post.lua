-- wrk script for the gateway benchmark: a small non-streaming chat request
-- to model "mock" on every keep-alive connection, and one machine-readable
-- summary line at the end (latencies in microseconds). The bearer key comes
-- from $GATEWAY_BENCH_KEY (LiteLLM refuses to run without a master key).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("GATEWAY_BENCH_KEY") or "sk-dummy")
wrk.body = '{"model":"mock","messages":[{"role":"user","content":"Say something."}],"max_tokens":20}'

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
