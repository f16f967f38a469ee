#!/usr/bin/env bash
# Embedding throughput on one mixed-length corpus, all in one run:
#  - in process: `switchyard bench embed` vs sentence-transformers, 1 and 2 threads;
#  - over HTTP: the same load client against Switchyard (batcher on and off)
#    and the Infinity server, at concurrency 1, 8, 32 (one text per request)
#    and 4 clients x 32 texts.
# Prints markdown tables. Python anchors are installed on first use into
# $SWITCHYARD_CACHE/venv-st and venv-infinity (several GB, PyPI only).
#   scripts/bench/embeddings.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
reps="${REPS:-3}"
# Texts per HTTP measurement: a prefix of the corpus (same length mix), so
# the slowest server takes minutes, not a quarter of an hour, per row.
http_texts="${HTTP_TEXTS:-1000}"
model_dir="$root/models/all-minilm-l6-v2"
work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

venv() { # venv NAME PIP_SPEC...
  local dir="$cache/$1"; shift
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import sys' 2>/dev/null; then
    python3 -m venv "$dir"
  fi
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  echo "$dir"
}
st="$(venv venv-st torch==2.15.0 sentence-transformers==6.2.0)"
inf="$(venv venv-infinity "infinity-emb[server,torch]==0.0.78")"

corpus="$work/corpus.jsonl"
python3 scripts/bench/make-corpus.py "$corpus" "${CORPUS_TEXTS:-2000}"

wait_ready() { # wait_ready URL: until it answers 200 (models loaded)
  for _ in $(seq 600); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server at $1 never came up" >&2; return 1
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(round(d[sys.argv[2]], int(sys.argv[3])))' "$1" "$2" "$3"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -o -m1 'avx512f' /proc/cpuinfo || echo 'no avx512')"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
echo "corpus: $(wc -l <"$corpus") texts"
echo
echo "### In process (batch 32, sorted by length), sentences/s"
echo
echo "| threads | sentence-transformers | switchyard | ratio |"
echo "| --- | --- | --- | --- |"
for t in 1 2; do
  a=$("$st/bin/python" scripts/bench/st-embed.py "$model_dir" "$corpus" "$t" 32 "$reps" 2>/dev/null | tail -1)
  b=$("$sy" bench embed --model "$model_dir" --corpus "$corpus" --threads "$t" --repetitions "$reps" | tail -1)
  ra=$(field "$a" sentences_per_s 1); rb=$(field "$b" sentences_per_s 1)
  echo "| $t | $ra | $rb | $(python3 -c "print(round($rb/$ra, 2))") |"
done
echo "(corpus: $(field "$b" tokens 0) tokens after truncation at 256)"

loads=("1 1" "8 1" "32 1" "4 32")
http_row() { # http_row NAME URL MODEL
  local row="| $1 |"
  for l in "${loads[@]}"; do
    read -r c n <<<"$l"
    r=$("$sy" bench http --url "$2" --model "$3" --corpus "$corpus" --concurrency "$c" --inputs "$n" --limit "$http_texts" --repetitions "$reps" | tail -1)
    row="$row $(field "$r" sentences_per_s 1) ($(field "$r" p50_ms 0) / $(field "$r" p99_ms 0)) |"
  done
  echo "$row"
}
serve_switchyard() { # serve_switchyard MAX_BATCH_REQUESTS MAX_WAIT_MS
  local port; port=$(free_port)
  cat >"$work/config.yaml" <<YAML
server: { host: 127.0.0.1, port: $port, max_concurrent_requests: 256, log_format: plain }
engine: { threads: 2 }
default_model: all-minilm-l6-v2
models:
  - id: all-minilm-l6-v2
    kind: embedding
    path: $model_dir
    embedding: { max_batch_requests: $1, max_wait_ms: $2, queue_capacity: 512 }
YAML
  RUST_LOG=warn "$sy" serve --config "$work/config.yaml" >"$work/switchyard.log" 2>&1 &
  server=$!
  url="http://127.0.0.1:$port/v1"
  wait_ready "http://127.0.0.1:$port/ready"
}

echo
echo "### Over HTTP, first $http_texts texts, sentences/s (p50 / p99 ms per request); concurrency x texts per request"
echo
echo "| server | 1 x 1 | 8 x 1 | 32 x 1 | 4 x 32 |"
echo "| --- | --- | --- | --- | --- |"
port=$(free_port)
"$inf/bin/infinity_emb" v2 --model-id "$model_dir" --engine torch --device cpu --port "$port" \
  --url-prefix /v1 --served-model-name all-minilm-l6-v2 >"$work/infinity.log" 2>&1 &
server=$!
wait_ready "http://127.0.0.1:$port/v1/models"
http_row "Infinity 0.0.78 (torch)" "http://127.0.0.1:$port/v1" all-minilm-l6-v2
stop_server
serve_switchyard 32 2
http_row "switchyard, batcher on" "$url" all-minilm-l6-v2
stop_server
serve_switchyard 1 0
http_row "switchyard, batcher off" "$url" all-minilm-l6-v2
stop_server
echo
echo "load after: $(uptime | sed 's/.*load average/load average/')"
