#!/usr/bin/env bash
# Serving under load: N concurrent streaming chats (max_tokens 128, the
# end-of-turn token banned so every answer is 128 tokens) against
# `switchyard serve` and llama.cpp's `llama-server` (16 slots) on the same
# GGUF and thread count, measured by the same client (`switchyard bench chat`).
# Prints markdown table rows: one per server and concurrency, then peak RSS.
#   scripts/bench/serving.sh [LLAMA_CPP_BIN_DIR]
# THREADS (default 2), LEVELS (default "1 4 8 16"), REQS_PER_CLIENT
# (default 2, at least 4 chats per level) and SERVERS (default
# "switchyard llama-server") change the run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin="$(llama_cpp_bin "${1:-}")"
threads="${THREADS:-2}"
levels="${LEVELS:-1 4 8 16}"
per="${REQS_PER_CLIENT:-2}"
servers="${SERVERS:-switchyard llama-server}"
eot=2 # <|im_end|> in SmolLM2's vocabulary
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT

run_levels() { # run_levels NAME PORT MODEL
  local name="$1" port="$2" served="$3"
  for c in $levels; do
    local n=$((c * per)); [ "$n" -lt 4 ] && n=4
    "$sy" bench chat --url "http://127.0.0.1:$port/v1" --model "$served" --concurrency "$c" \
      --requests "$n" --max-tokens 128 --ban-token "$eot" |
      python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
cols = ["concurrency", "requests", "tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "latency_p50_ms", "latency_p99_ms"]
cells = [sys.argv[1]] + [str(r[c]) if isinstance(r[c], int) else "%.1f" % r[c] if c == "tokens_per_s" else "%.0f" % r[c] for c in cols]
print("| " + " | ".join(cells) + " |")
' "$name"
  done
}

serve() { # serve NAME READY_PATH MODEL -- command...
  local name="$1" ready="$2" served="$3"; shift 3
  start_server "$ready" "$@"
  run_levels "$name" "$port" "$served"
  rss["$name"]=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

declare -A rss
echo "| server | concurrency | chats | tokens/s | TTFT p50 ms | TTFT p99 ms | latency p50 ms | latency p99 ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
on() { [[ " $servers " == *" $1 "* ]]; }
on switchyard && serve switchyard /ready smollm2-135m-instruct.q4_1 -- \
  env SWITCHYARD_ENGINE__THREADS="$threads" SWITCHYARD_ENGINE__MAX_NUM_SEQS=16 \
  SWITCHYARD_SERVER__MAX_CONCURRENT_REQUESTS=64 \
  "$sy" serve --model "$smollm" --host 127.0.0.1 --log-format plain
on llama-server && serve llama-server /health smollm2 -- \
  env LD_LIBRARY_PATH="$bin" "$bin/llama-server" -m "$smollm" --host 127.0.0.1 \
  -t "$threads" -tb "$threads" -np 16 -c 16384
echo
echo "| server | peak RSS after the run |"
echo "| --- | --- |"
for name in $servers; do echo "| $name | ${rss[$name]} MiB |"; done
