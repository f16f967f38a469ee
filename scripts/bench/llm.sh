#!/usr/bin/env bash
# Single-stream prefill (pp512) and decode (tg128) tokens/s: llama.cpp's
# llama-bench and `switchyard bench` on the same GGUF, same machine, one run,
# at 1 and 2 threads. Prints a markdown table with the ratios.
#   scripts/bench/llm.sh [LLAMA_CPP_BIN_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin="$(llama_cpp_bin "${1:-}")"
model="$smollm"
reps="${REPS:-3}"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
echo
echo "| threads | llama.cpp pp512 | switchyard pp512 | ratio | llama.cpp tg128 | switchyard tg128 | ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for t in 1 2; do
  ll=$(LD_LIBRARY_PATH="$bin" "$bin/llama-bench" -m "$model" -p 512 -n 128 -t "$t" -r "$reps" -o json 2>/dev/null)
  ours=$("$sy" bench llm --model "$model" --prompt-tokens 512 --gen-tokens 128 --repetitions "$reps" --threads "$t" | tail -1)
  python3 - "$t" "$ll" "$ours" <<'PY'
import json, sys
t, ll, ours = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pp = next(r["avg_ts"] for r in ll if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in ll if r["n_gen"] > 0)
print(f"| {t} | {pp:.0f} | {ours['pp_tok_s']:.0f} | {ours['pp_tok_s']/pp:.2f} | {tg:.0f} | {ours['tg_tok_s']:.0f} | {ours['tg_tok_s']/tg:.2f} |")
PY
done
echo
echo "load after: $(uptime | sed 's/.*load average/load average/')"
