#!/usr/bin/env bash
# API requests per second on loopback with wrk, written into docs/benchmarks.md.
# Runs the demo to get a spoke with packs, products, documents and locks, then
# loads `spoke serve` (plain HTTP on loopback, rate limit off) with wrk.
# Usage: bash ci/bench-api.sh   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
bash ci/demo.sh "$work/demo" > "$work/demo.log"
spoke=target/release/spoke
data="$work/demo/spoke"
token=$($spoke users token --data "$data" --user admin --label bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
$spoke serve --data "$data" --addr 127.0.0.1:0 --http --rate-limit 0 --json > "$work/serve.log" &
server=$!
for _ in $(seq 100); do grep -q listening "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$work/serve.log")

rows=""
run() {  # name path [auth]
  local args=(-t2 -c16 -d10s --latency)
  [ "${3:-}" = auth ] && args+=(-H "authorization: Bearer $token")
  local out; out=$(wrk "${args[@]}" "$url$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  echo "$1: $rps req/s, p50 $p50, p99 $p99" >&2
  rows+="| $1 | \`$2\` | $rps | $p50 | $p99 |"$'\n'
  eval "rps_$4=$rps"
}
run "liveness (no auth, no store)" /health noauth base
run "entity with documents and latest evaluation" /api/v1/entities/hydra-serum auth entity
run "search, top 10 BM25 with snippets" "/api/v1/search?q=salicylic+acid" auth search
run "Compliance Lock" "/api/v1/locks?product=hydra-serum&limit=1" auth lock

cpu=$(awk -F: '/model name/ {gsub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)
text="wrk 2 threads, 16 connections, 10 s per endpoint, against \`spoke serve --http --rate-limit 0\` on loopback on the demo's data (same machine, same run; wrk shares the 2 cores with the server). Every authenticated request checks the bearer token's hash in SQLite and the role against the route table. The liveness endpoint is the baseline: what the HTTP stack costs without the store. Machine: $(nproc) cores, $cpu. \`bash ci/bench-api.sh\`.

| endpoint | path | requests/s | p50 | p99 |
|---|---|---|---|---|
${rows}
Authenticated entity reads run at $(python3 -c "print(f'{$rps_entity / $rps_base:.2f}')")x the liveness baseline; search at $(python3 -c "print(f'{$rps_search / $rps_base:.2f}')")x."
python3 - "$text" <<'PY'
import sys, re
text = sys.argv[1]
p = "docs/benchmarks.md"
doc = open(p).read()
doc = re.sub(r"(<!-- api-bench:begin -->\n).*?(<!-- api-bench:end -->)", lambda m: m.group(1) + text + "\n" + m.group(2), doc, flags=re.S)
open(p, "w").write(doc)
PY
echo "$text"
