#!/usr/bin/env bash
# Gateway overhead (docs: shared BENCHMARKS.md §3): the same fast mock OpenAI
# upstream (nginx returning a fixed chat.completion JSON, or a fixed 22-event
# SSE stream) measured directly and behind each gateway, in ONE run, with the
# same load generators on 127.0.0.1:
#   * wrk + scripts/bench/gateway/post.lua (keep-alive, non-streaming):
#     requests/s at c=64, p50 at c=1, p99 at c=16;
#   * scripts/bench/gateway/ttfb.py (stdlib, one keep-alive connection):
#     time to first `data:` chunk of a stream, c=1.
# Rows: direct to mock, nginx reverse proxy (one worker, and one per core),
# LiteLLM proxy, Switchyard (default I/O threads, and one).
# Per row: rps, latency and latency added over direct, CPU µs per request of
# the proxy's processes (utime+stime over its whole session, /proc/PID/stat,
# around the c=64 run; per stream from schedstat, which is finer), peak RSS
# (VmHWM summed over those processes).
#
#   scripts/bench/gateway.sh
#   SWITCHYARD_BIN=target/release/switchyard scripts/bench/gateway.sh
#   GATEWAY_BENCH_SECS=3 GATEWAY_BENCH_REPS=1 scripts/bench/gateway.sh   # quick
#
# Env: GATEWAY_BENCH_SECS (10) seconds per wrk run; GATEWAY_BENCH_REPS (3)
# repetitions, medians reported; GATEWAY_STREAM_REQS (200) streams per ttfb
# run; GATEWAY_BENCH_ROWS ("direct nginx nginxn litellm switchyard switchyard1
# switchyard0"; switchyard0: I/O threads that never spin before sleeping;
# nginxn: nginx with one worker per core);
# GATEWAY_WRK_THREADS (2, at most the concurrency); NGINX_PROXY_WORKERS (1);
# LITELLM_WORKERS (2); LITELLM_PIP_SPEC
# ("litellm[proxy]"); SWITCHYARD_BIN (the row is skipped without it);
# OUT (/tmp/gateway-bench.md) where the Markdown report is also written.
#
# How the mock tells streaming from non-streaming: nginx fills $request_body
# only when it passes the body on (proxy_pass), which would put a second hop
# inside the mock, and nginx-light has no njs/echo module; so the mock
# branches on the PATH: POST /v1/chat/completions returns the JSON and
# POST /stream/v1/chat/completions returns the SSE stream, whatever the body.
# Each gateway therefore gets two models/routes: `mock` (base .../v1) and
# `mock-stream` (base .../stream/v1); streaming requests ask for
# model=mock-stream with "stream": true.
set -euo pipefail

# ---------------------------------------------------------------------------
# Switchyard's config: edit here when its keys change. $1 = its port, $2 = the
# mock's port. The port is also given by env (SWITCHYARD_SERVER__PORT).
switchyard_yaml() {
  cat <<YAML
server: {host: 127.0.0.1, port: $1, log_format: plain, max_concurrent_requests: 4096}
models: []
upstreams:
  - name: mock
    base_url: http://127.0.0.1:$2/v1
  - name: mock-stream
    base_url: http://127.0.0.1:$2/stream/v1
routes:
  - id: mock
    deployments: [mock]
  - id: mock-stream
    deployments: [mock-stream]
# Auth, rate limits and usage metering on: the bench key is the adopted
# admin key, whose tier has (very high) real limits, so every request pays
# for the key check, the GCRA windows, the budget check and a usage record.
tenancy:
  default_tier: bench
  tiers:
    bench: {requests_per_minute: 1000000000, requests_per_hour: 100000000000, tokens_per_minute: 1000000000000}
YAML
}
# ---------------------------------------------------------------------------

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/scripts/bench/gateway"
cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
secs="${GATEWAY_BENCH_SECS:-10}"
reps="${GATEWAY_BENCH_REPS:-3}"
stream_reqs="${GATEWAY_STREAM_REQS:-200}"
rows="${GATEWAY_BENCH_ROWS:-direct nginx nginxn litellm switchyard switchyard1 switchyard0}"
nginx_workers="${NGINX_PROXY_WORKERS:-1}"
litellm_workers="${LITELLM_WORKERS:-2}"
wrk_threads="${GATEWAY_WRK_THREADS:-2}"
litellm_venv="$cache/venv-litellm"
out="${OUT:-/tmp/gateway-bench.md}"
tck="$(getconf CLK_TCK)"
tmp="$(mktemp -d /tmp/gateway-bench.XXXXXX)"
# One random bearer key per run, sent by every client (post.lua, ttfb.py,
# curl) and set as LiteLLM's master key: recent LiteLLM refuses to start
# without one.
GATEWAY_BENCH_KEY="sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export GATEWAY_BENCH_KEY

for tool in nginx wrk python3 curl setsid; do
  command -v "$tool" >/dev/null || { echo "gateway.sh: $tool not found (apt-get install nginx-light wrk curl)" >&2; exit 1; }
done

# --- processes ---------------------------------------------------------------
# Every server is started in its own session (setsid), so its id is also the
# id of its session and process group: all its workers and children are found
# by session and stopped together.
sessions=()
cleanup() {
  local s
  for s in "${sessions[@]}"; do stop_session "$s"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_session LOG -- command...: sets $pid (= session id).
start_session() {
  local log="$1"; shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  pid=$!
  sessions+=("$pid")
}

# Live (non-zombie) processes of a session.
session_pids() { ps -o pid=,stat= --sid "$1" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'; }

stop_session() {
  local s="$1" i
  kill -TERM -- "-$s" 2>/dev/null || true
  for i in $(seq 50); do [ -z "$(session_pids "$s")" ] && break; sleep 0.1; done
  kill -KILL -- "-$s" 2>/dev/null || true
  wait "$s" 2>/dev/null || true
  local keep=() x
  for x in "${sessions[@]}"; do [ "$x" != "$s" ] && keep+=("$x"); done
  sessions=("${keep[@]+"${keep[@]}"}")
}

# CPU clock ticks (utime+stime) summed over a session's processes.
cpu_ticks() {
  local p sum=0 t
  for p in $(session_pids "$1"); do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}

# CPU nanoseconds (on-CPU time from /proc/PID/task/TID/schedstat) summed over
# the live threads of a session's processes: finer than clock ticks (10 ms).
cpu_ns() {
  local p
  for p in $(session_pids "$1"); do cat /proc/"$p"/task/*/schedstat 2>/dev/null || true; done |
    awk '{s += $1} END {printf "%.0f", s}'
}

# Peak RSS in MB (VmHWM) summed over a session's processes.
peak_rss_mb() {
  local p
  for p in $(session_pids "$1"); do awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || true; done |
    awk '{s += $1} END {printf "%.0f", s / 1024}'
}

# A free TCP port on 127.0.0.1 (as in common.sh).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL SESSION LOG TRIES: until URL answers 2xx; fails (with the log's
# tail) if the process dies or TRIES × 0.2 s pass.
wait_http() {
  local url="$1" s="$2" log="$3" tries="${4:-150}" i
  for i in $(seq "$tries"); do
    curl -sf -o /dev/null --max-time 2 "$url" && return 0
    if [ -z "$(session_pids "$s")" ]; then
      echo "  process exited; last lines of $log:" >&2; tail -n 20 "$log" | sed 's/^/    /' >&2; return 1
    fi
    sleep 0.2
  done
  echo "  $url not answering after $((tries / 5)) s; last lines of $log:" >&2
  tail -n 20 "$log" | sed 's/^/    /' >&2
  return 1
}

# --- small numeric helpers ---------------------------------------------------
calc() { awk "BEGIN {print $1}"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# field "RESULT a=1 b=2" b -> 2
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.3f", u / 1000}'; }

# --- nginx configs -----------------------------------------------------------
# A file's contents as a single-quoted nginx string (for `return 200 '...'`).
nginx_string() {
  python3 - "$1" <<'PY'
import sys
s = open(sys.argv[1]).read()
assert "$" not in s, "nginx would read $ as a variable"
print("'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'")
PY
}

# The part every nginx here shares. $1 = its folder, $2 = worker processes.
nginx_head() {
  cat <<EOF
daemon off;
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
EOF
}

# The mock upstream: 1 worker, fixed replies from scripts/bench/gateway/.
mock_conf() { # DIR PORT
  nginx_head "$1" 1
  cat <<EOF
  server {
    listen 127.0.0.1:$2;
    location = /v1/chat/completions {
      default_type application/json;
      return 200 $(nginx_string "$here/completion.json");
    }
    location = /stream/v1/chat/completions {
      default_type text/event-stream;
      add_header Cache-Control no-cache;
      return 200 $(nginx_string "$here/stream.sse");
    }
    location = /v1/models {
      default_type application/json;
      return 200 '{"object":"list","data":[{"id":"mock","object":"model","owned_by":"bench"}]}';
    }
    location = /health { return 200 'ok'; }
  }
}
EOF
}

# nginx as a reverse proxy in front of the mock: upstream keep-alive, HTTP/1.1,
# buffering off on the streaming path so chunks are forwarded as they arrive.
proxy_conf() { # DIR PORT MOCKPORT WORKERS
  nginx_head "$1" "$4"
  cat <<EOF
  upstream mock {
    server 127.0.0.1:$3;
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
  }
  server {
    listen 127.0.0.1:$2;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location /stream/ {
      proxy_pass http://mock;
      proxy_buffering off;
    }
    location / {
      proxy_pass http://mock;
    }
  }
}
EOF
}

# --- measuring one row -------------------------------------------------------
declare -A R  # R[row.key] = value

wrk_run() { # URL CONCURRENCY SECONDS -> the RESULT line of post.lua
  local threads=$wrk_threads
  [ "$2" -lt "$threads" ] && threads=$2
  wrk -t"$threads" -c"$2" -d"$3s" --timeout 10s --latency -s "$here/post.lua" "$1" | grep '^RESULT' || echo "RESULT requests=0"
}

ttfb_run() { # URL MODEL -> the RESULT line of ttfb.py
  timeout 600 python3 "$here/ttfb.py" "$1" "$2" "$stream_reqs" | grep '^RESULT' || echo "RESULT requests=0"
}

# One-shot sanity check that the row answers both kinds of request correctly.
check_row() { # URL STREAM_URL STREAM_MODEL
  local body
  body=$(curl -s --max-time 30 -H 'Content-Type: application/json' -H "Authorization: Bearer $GATEWAY_BENCH_KEY" \
    -d '{"model":"mock","messages":[{"role":"user","content":"hi"}]}' "$1") || true
  if ! grep -q '"usage"' <<<"$body" || ! grep -q 'chat.completion' <<<"$body"; then
    echo "  non-streaming reply is not a chat.completion with usage: ${body:0:300}" >&2; return 1
  fi
  body=$(curl -sN --max-time 30 -H 'Content-Type: application/json' -H "Authorization: Bearer $GATEWAY_BENCH_KEY" \
    -d "{\"model\":\"$3\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" "$2") || true
  if ! grep -q '^data: \[DONE\]' <<<"$body"; then
    echo "  streaming reply does not end in data: [DONE]: ${body:0:300}" >&2; return 1
  fi
  echo "  check: chat.completion with usage ok; stream of $(grep -c '^data:' <<<"$body") data: events"
}

# bench_row ROW URL STREAM_URL STREAM_MODEL SESSION: runs every measurement
# against a started server and records medians in R[ROW.*].
bench_row() {
  local row="$1" url="$2" surl="$3" smodel="$4" s="$5"
  local rps=() cpu=() p50=() p99=() err=() ttfc=() scpu=() stotal=() sev="" sconn="" serr=0
  local i line t0 t1 n
  check_row "$url" "$surl" "$smodel" || return 1
  wrk_run "$url" 16 "$(( secs < 2 ? secs : 2 ))" >/dev/null # warm-up, not recorded
  for i in $(seq "$reps"); do
    t0=$(cpu_ticks "$s"); line=$(wrk_run "$url" 64 "$secs"); t1=$(cpu_ticks "$s")
    n=$(field "$line" requests)
    [ "${n:-0}" -gt 0 ] || { echo "  c=64 run got no replies" >&2; return 1; }
    rps+=("$(field "$line" rps)"); err+=($(( $(field "$line" errors) + $(field "$line" non2xx) )))
    cpu+=("$(calc "($t1 - $t0) * 1e6 / $tck / $n")")
    line=$(wrk_run "$url" 1 "$secs"); p50+=("$(field "$line" p50_us)")
    line=$(wrk_run "$url" 16 "$secs"); p99+=("$(field "$line" p99_us)")
    # CPU per stream from schedstat (ns): 200 streams of tens of µs each stay
    # under one 10 ms clock tick. It misses threads that exit during the run
    # (a thread-per-connection server's); clock ticks where it is missing.
    if [ -r /proc/self/schedstat ]; then
      t0=$(cpu_ns "$s"); line=$(ttfb_run "$surl" "$smodel"); t1=$(cpu_ns "$s")
    else
      t0=$(cpu_ticks "$s"); line=$(ttfb_run "$surl" "$smodel"); t1=$(cpu_ticks "$s")
      t0=$((t0 * 1000000000 / tck)); t1=$((t1 * 1000000000 / tck))
    fi
    n=$(field "$line" requests)
    [ "${n:-0}" -gt 0 ] || { echo "  streaming run got no complete streams" >&2; return 1; }
    ttfc+=("$(field "$line" ttfc_p50_us)"); stotal+=("$(field "$line" total_p50_us)")
    scpu+=("$(calc "($t1 - $t0) / 1e3 / $n")")
    sev=$(field "$line" events); sconn=$(field "$line" connects); serr=$((serr + $(field "$line" errors)))
    echo "  rep $i: ${rps[-1]} rps @64 (errors ${err[-1]}), p50 @1 $(ms "${p50[-1]}") ms, p99 @16 $(ms "${p99[-1]}") ms," \
      "CPU ${cpu[-1]} µs/req; stream TTFC p50 $(ms "${ttfc[-1]}") ms, CPU ${scpu[-1]} µs/stream, $sev events, $sconn connection(s)"
  done
  R[$row.rps]=$(median "${rps[@]}"); R[$row.err]=$(median "${err[@]}")
  R[$row.cpu]=$(median "${cpu[@]}"); R[$row.p50]=$(median "${p50[@]}"); R[$row.p99]=$(median "${p99[@]}")
  R[$row.ttfc]=$(median "${ttfc[@]}"); R[$row.stotal]=$(median "${stotal[@]}"); R[$row.scpu]=$(median "${scpu[@]}")
  R[$row.sev]=$sev; R[$row.sconn]=$sconn; R[$row.serr]=$serr
  R[$row.rss]=$(peak_rss_mb "$s")
}

# --- the rows ----------------------------------------------------------------
mock_port=""; mock_sid=""

start_mock() {
  mkdir -p "$tmp/mock"
  mock_port=$(free_port)
  mock_conf "$tmp/mock" "$mock_port" >"$tmp/mock/nginx.conf"
  start_session "$tmp/mock/log" -- nginx -p "$tmp/mock" -c "$tmp/mock/nginx.conf"
  mock_sid=$pid
  wait_http "http://127.0.0.1:$mock_port/health" "$mock_sid" "$tmp/mock/error.log"
}

row_direct() {
  bench_row direct "http://127.0.0.1:$mock_port/v1/chat/completions" \
    "http://127.0.0.1:$mock_port/stream/v1/chat/completions" mock "$mock_sid"
}

# row_nginx [ROW WORKERS]: ROW defaults to nginx, WORKERS to NGINX_PROXY_WORKERS.
row_nginx() {
  local row="${1:-nginx}" workers="${2:-$nginx_workers}"
  local d="$tmp/$row" port rc=0
  mkdir -p "$d"; port=$(free_port)
  proxy_conf "$d" "$port" "$mock_port" "$workers" >"$d/nginx.conf"
  start_session "$d/log" -- nginx -p "$d" -c "$d/nginx.conf"
  local s=$pid
  wait_http "http://127.0.0.1:$port/health" "$s" "$d/error.log" &&
    bench_row "$row" "http://127.0.0.1:$port/v1/chat/completions" \
      "http://127.0.0.1:$port/stream/v1/chat/completions" mock "$s" || rc=$?
  stop_session "$s"
  return "$rc"
}

# One worker per core (nginx's `worker_processes auto`), as Switchyard's
# default of one I/O thread per core: the like-for-like pair of the
# defaults, as the nginx row (one worker) is for `io_threads: 1`.
row_nginxn() { row_nginx nginxn "$(nproc)"; }

# LiteLLM in its own venv under the cache, installed on first use.
install_litellm() {
  [ -x "$litellm_venv/bin/litellm" ] && return 0
  echo "  installing ${LITELLM_PIP_SPEC:-litellm[proxy]} into $litellm_venv (first use)"
  python3 -m venv "$litellm_venv"
  "$litellm_venv/bin/pip" install -q "${LITELLM_PIP_SPEC:-litellm[proxy]}"
}

row_litellm() {
  local d="$tmp/litellm" port rc=0 workers=()
  install_litellm || { echo "  pip install of LiteLLM failed" >&2; return 1; }
  mkdir -p "$d"; port=$(free_port)
  cat >"$d/config.yaml" <<YAML
model_list:
  - model_name: mock
    litellm_params: {model: openai/mock, api_base: "http://127.0.0.1:$mock_port/v1", api_key: sk-dummy}
  - model_name: mock-stream
    litellm_params: {model: openai/mock, api_base: "http://127.0.0.1:$mock_port/stream/v1", api_key: sk-dummy}
litellm_settings: {telemetry: false, set_verbose: false, drop_params: true}
general_settings: {disable_spend_logs: true}
YAML
  local env=(env -C "$d" -u DATABASE_URL LITELLM_TELEMETRY=False LITELLM_LOCAL_MODEL_COST_MAP=True
    LITELLM_MASTER_KEY="$GATEWAY_BENCH_KEY" LITELLM_LOG=ERROR NO_DOCS=True DISABLE_ADMIN_UI=True)
  # `--num_workers` where this LiteLLM's CLI has it.
  local help; help=$("${env[@]}" "$litellm_venv/bin/litellm" --help 2>/dev/null || true)
  if grep -q -- '--num_workers' <<<"$help"; then
    workers=(--num_workers "$litellm_workers")
  else
    echo "  this LiteLLM has no --num_workers: 1 worker"
  fi
  echo "  LiteLLM $("$litellm_venv/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}'), ${workers[*]:-1 worker}"
  start_session "$d/log" -- "${env[@]}" "$litellm_venv/bin/litellm" --config "$d/config.yaml" \
    --host 127.0.0.1 --port "$port" "${workers[@]}"
  local s=$pid
  wait_http "http://127.0.0.1:$port/health/liveliness" "$s" "$d/log" 900 &&
    bench_row litellm "http://127.0.0.1:$port/v1/chat/completions" \
      "http://127.0.0.1:$port/v1/chat/completions" mock-stream "$s" || rc=$?
  stop_session "$s"
  return "$rc"
}

# row_switchyard [ROW IO_THREADS [IO_SPIN_US]]: ROW defaults to switchyard,
# IO_THREADS to the server's default (0: one per core), IO_SPIN_US to the
# server's default (unset).
row_switchyard() {
  local row="${1:-switchyard}" io="${2:-0}" spin=()
  [ -n "${3:-}" ] && spin=(SWITCHYARD_SERVER__IO_SPIN_US="$3")
  local bin="${SWITCHYARD_BIN:-}" d="$tmp/$row" port rc=0
  if [ -z "$bin" ]; then
    R[$row.skip]="skipped: SWITCHYARD_BIN is unset"
  elif [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    R[$row.skip]="skipped: SWITCHYARD_BIN=$bin is not an executable file"
  fi
  if [ -n "${R[$row.skip]:-}" ]; then
    echo "  ${R[$row.skip]} (set it to a release build of switchyard to measure this row)"
    return 0
  fi
  bin="$(realpath "$bin")"
  mkdir -p "$d"; port=$(free_port)
  switchyard_yaml "$port" "$mock_port" >"$d/config.yaml"
  if ! "$bin" config check "$d/config.yaml" >"$d/check.log" 2>&1; then
    R[$row.skip]="failed: \`switchyard config check\` rejected the config: $(tr '\n|' ' /' <"$d/check.log" | cut -c1-300)"
    echo "  ${R[$row.skip]}" >&2
    echo "  the config was:" >&2; sed 's/^/    /' "$d/config.yaml" >&2
    return 1
  fi
  # Switchyard keys have their own shape; this row sends one.
  local litellm_key=$GATEWAY_BENCH_KEY
  GATEWAY_BENCH_KEY="sy-$(python3 -c 'import secrets; print(secrets.token_hex(8))').$(python3 -c 'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))')"
  export GATEWAY_BENCH_KEY
  start_session "$d/log" -- env SWITCHYARD_SERVER__HOST=127.0.0.1 SWITCHYARD_SERVER__PORT="$port" \
    SWITCHYARD_SERVER__LOG_FORMAT=plain SWITCHYARD_SERVER__IO_THREADS="$io" "${spin[@]}" SWITCHYARD_STORAGE__DATA_DIR="$d/data" \
    SWITCHYARD_ADMIN_KEY="$GATEWAY_BENCH_KEY" "$bin" serve --config "$d/config.yaml"
  local s=$pid
  wait_http "http://127.0.0.1:$port/health" "$s" "$d/log" 300 &&
    bench_row "$row" "http://127.0.0.1:$port/v1/chat/completions" \
      "http://127.0.0.1:$port/v1/chat/completions" mock-stream "$s" || rc=$?
  stop_session "$s"
  GATEWAY_BENCH_KEY=$litellm_key
  export GATEWAY_BENCH_KEY
  return "$rc"
}

# The same with one I/O thread, as the nginx row has one worker.
row_switchyard1() { row_switchyard switchyard1 1; }

# The default I/O threads without spinning before they sleep (what the
# spin buys at c=1, and what it costs per stream).
row_switchyard0() { row_switchyard switchyard0 0 0; }

# --- report ------------------------------------------------------------------
declare -A NAME=([direct]="direct to mock" [nginx]="nginx reverse proxy ($nginx_workers worker)"
  [nginxn]="nginx reverse proxy ($(nproc) workers)"
  [litellm]="LiteLLM proxy ($litellm_workers workers)" [switchyard]="Switchyard"
  [switchyard1]="Switchyard, io_threads: 1" [switchyard0]="Switchyard, io_spin_us: 0")

have() { [ -n "${R[$1.rps]:-}" ]; }
added() { # ROW KEY -> ms over direct, or –
  if [ "$1" = direct ] || ! have direct; then echo "–"; else
    awk -v a="${R[$1.$2]}" -v b="${R[direct.$2]}" 'BEGIN {printf "%+.3f", (a - b) / 1000}'; fi
}
ratio() { # ROW_A ROW_B KEY
  if have "$1" && have "$2"; then awk -v a="${R[$1.$3]}" -v b="${R[$2.$3]}" 'BEGIN {r = a / b; printf (r >= 0.1 ? "%.2f×" : "%.3g×"), r}'
  else
    local miss=() r
    for r in "$1" "$2"; do have "$r" || miss+=("$r"); done
    echo "n/a (no ${miss[*]} figures)"
  fi
}

report() {
  local row
  echo "| system | rps @64 | errors @64 | p50 @1 ms | added p50 @1 ms | p99 @16 ms | added p99 @16 ms | CPU µs / request | RSS MB | stream TTFC p50 ms | added TTFC ms | CPU µs / stream | keep-alive c=1 check |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for row in $rows; do
    if ! have "$row"; then
      echo "| ${NAME[$row]} | ${R[$row.skip]:-failed (see the log above)} | | | | | | | | | | | |"; continue
    fi
    local ka="ok"
    [ "${R[$row.p50]}" -ge 30000 ] && ka="**STALL** (p50 ≥ 30 ms: Nagle / delayed ACK?)"
    [ "${R[$row.sconn]}" != 1 ] && ka="$ka; streams used ${R[$row.sconn]} connections"
    [ "${R[$row.serr]}" != 0 ] && ka="$ka; ${R[$row.serr]} failed streams"
    printf '| %s | %.0f | %s | %s | %s | %s | %s | %.1f | %s | %s | %s | %.1f | %s |\n' \
      "${NAME[$row]}" "${R[$row.rps]}" "${R[$row.err]}" "$(ms "${R[$row.p50]}")" "$(added "$row" p50)" \
      "$(ms "${R[$row.p99]}")" "$(added "$row" p99)" "${R[$row.cpu]}" "${R[$row.rss]}" \
      "$(ms "${R[$row.ttfc]}")" "$(added "$row" ttfc)" "${R[$row.scpu]}" "$ka"
  done
  echo
  echo "CPU and RSS are the proxy's own processes (for \"direct\", the mock's); \"added\" = row minus direct."
  echo "Keep-alive c=1 check: the wrk c=1 run on one keep-alive connection; p50 ≥ 30 ms is flagged as a stall."
  echo "Stream events seen by the client (mock sends 22): $(for row in $rows; do have "$row" && printf '%s %s; ' "$row" "${R[$row.sev]}"; done)"
  echo
  echo "| ratio | value | target (BENCHMARKS.md §3) |"
  echo "| --- | --- | --- |"
  echo "| Switchyard rps / nginx ($nginx_workers worker) rps | $(ratio switchyard nginx rps) | ≥ 0.5× |"
  echo "| Switchyard rps / LiteLLM rps | $(ratio switchyard litellm rps) | ≥ 50× |"
  echo "| Switchyard CPU per request / nginx ($nginx_workers worker) CPU per request | $(ratio switchyard nginx cpu) | ≤ 3× |"
  if [[ " $rows " == *" nginxn "* ]]; then
    echo "| Switchyard rps / nginx ($(nproc) workers) rps | $(ratio switchyard nginxn rps) | ≥ 0.5× |"
    echo "| Switchyard CPU per request / nginx ($(nproc) workers) CPU per request | $(ratio switchyard nginxn cpu) | ≤ 3× |"
  fi
  if [[ " $rows " == *" switchyard1 "* ]]; then
    echo "| Switchyard (io_threads: 1) rps / nginx ($nginx_workers worker) rps | $(ratio switchyard1 nginx rps) | ≥ 0.5× |"
    echo "| Switchyard (io_threads: 1) CPU per request / nginx ($nginx_workers worker) CPU per request | $(ratio switchyard1 nginx cpu) | ≤ 3× |"
  fi
  if [[ " $rows " == *" switchyard0 "* ]]; then
    echo "| Switchyard (io_spin_us: 0) rps / nginx ($nginx_workers worker) rps | $(ratio switchyard0 nginx rps) | ≥ 0.5× |"
    echo "| Switchyard (io_spin_us: 0) CPU per request / nginx ($nginx_workers worker) CPU per request | $(ratio switchyard0 nginx cpu) | ≤ 3× |"
  fi
}

# --- main --------------------------------------------------------------------
machine=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
up_before=$(uptime)
echo "machine: $machine, $(nproc) CPUs"
echo "uptime before: $up_before"
echo "settings: ${secs}s × $reps reps per figure (medians), $stream_reqs streams per TTFC run, wrk $(wrk --version 2>&1 | awk 'NR == 1 {print $2}'), $(nginx -v 2>&1 | sed 's/.*: //')"
echo "mock: nginx, 1 worker; streaming selected by path (/stream/v1/...) since nginx cannot branch on the body"
echo
start_mock
echo "mock upstream on 127.0.0.1:$mock_port"
for row in $rows; do
  echo "== ${NAME[$row]:-?}"
  [ -n "${NAME[$row]:-}" ] || { echo "unknown row $row (rows: direct nginx nginxn litellm switchyard switchyard1 switchyard0)" >&2; exit 2; }
  "row_$row" || echo "  ${NAME[$row]}: FAILED (see above); going on with the other rows" >&2
done
stop_session "$mock_sid"
up_after=$(uptime)
echo
table=$(report)
{
  echo "# Gateway benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "machine: $machine, $(nproc) CPUs; ${secs}s × $reps reps (medians); $stream_reqs streams per TTFC run"
  echo
  echo "uptime before: $up_before"
  echo
  echo "uptime after: $up_after"
  echo
  echo "$table"
} >"$out"
echo "$table"
echo
echo "uptime after: $up_after"
echo "written to $out"
