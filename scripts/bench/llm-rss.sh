#!/usr/bin/env bash
# Peak resident memory (VmHWM) of `switchyard serve` with only SmolLM2 loaded
# and of llama-server (prompt cache off) on the same GGUF, each after one
# 64-token chat completion. Prints one markdown table row per server.
#   scripts/bench/llm-rss.sh [LLAMA_CPP_BIN_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin="$(llama_cpp_bin "${1:-}")"
model="$smollm"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
measure() { # measure NAME READY_PATH MODEL_NAME -- command...
  local name="$1" ready="$2" served="$3"; shift 3
  start_server "$ready" "$@"
  curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"$served\",\"messages\":[{\"role\":\"user\",\"content\":\"Write a haiku about trains.\"}],\"max_tokens\":64,\"temperature\":0}" >/dev/null
  echo "| $name | $(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status") MiB |"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}
echo "| server | peak RSS |"
echo "| --- | --- |"
measure "switchyard serve --model (SmolLM2 only)" /ready smollm2-135m-instruct.q4_1 -- \
  "$sy" serve --model "$model" --host 127.0.0.1 --log-format plain
measure "llama-server -cram 0 (prompt cache off)" /health smollm2 -- \
  env LD_LIBRARY_PATH="$bin" "$bin/llama-server" -m "$model" --host 127.0.0.1 -cram 0
