#!/usr/bin/env bash
# Model registry timings: cold load of each default model (POST
# /admin/load/{id} on a server that preloaded nothing), and the swap time
# when one resident seat is taken by the other model (drain + free + load),
# with `switchyard serve` in release mode. REPS (default 5) loads per figure.
#   scripts/bench/registry.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
reps="${REPS:-5}"
chat=smollm2-135m-instruct
embed=all-minilm-l6-v2
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
cfg="$(mktemp --suffix .yaml)"
cat >"$cfg" <<YAML
admin: {enabled: true}
registry: {max_resident_models: 1}
models:
  - {id: $chat, kind: chat, path: $root/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf, preload: false}
  - {id: $embed, kind: embedding, path: $root/models/all-minilm-l6-v2, preload: false}
YAML
start_server /ready -- "$sy" serve --config "$cfg" --host 127.0.0.1 --log-format plain
load() { curl -sf -o /dev/null -w '%{time_total}\n' -X POST "http://127.0.0.1:$port/admin/load/$1"; }
unload() { curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/admin/unload/$1?wait=true"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cold() { for _ in $(seq "$reps"); do load "$1"; unload "$1"; done | median; }
swap() { for _ in $(seq "$reps"); do load "$2" >/dev/null; load "$1"; done | median; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | cold load s (median of $reps) | swap in, evicting the other, s |"
echo "| --- | --- | --- |"
c1=$(cold $chat); c2=$(cold $embed)
s1=$(swap $chat $embed); s2=$(swap $embed $chat)
echo "| $chat | $c1 | $s1 |"
echo "| $embed | $c2 | $s2 |"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
