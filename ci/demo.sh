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

step "hub: build the product, pinning its pack ranges to published CIDs, and publish it"
$hub product build bundles/examples/products/eurocomply-cosmetics.yaml --repo "$out/repo" --out "$out/bundles/eurocomply-cosmetics.bundle"
$hub publish --repo "$out/repo" --keys "$out/hub-keys" "$out/bundles/eurocomply-cosmetics.bundle"
$hub list --repo "$out/repo"

step "spoke: first boot with only the hub's root of trust"
$spoke init --data "$out/spoke" --trust "$out/repo/metadata/1.root.json"
recipient=$($spoke identity --data "$out/spoke" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["age_recipient"])')

step "hub: export a medium encrypted to that spoke (a lost stick reveals only sizes)"
$hub export --repo "$out/repo" --to "$out/usb" --recipient "$recipient"
ls -la "$out/usb"

step "spoke: verify and import the medium (no network)"
$spoke import --data "$out/spoke" "$out/usb"

step "spoke: what is installed"
$spoke bundles --data "$out/spoke"

step "offline delta: the spoke's inventory lets the hub ship only missing chunks"
$spoke inventory --data "$out/spoke" --out "$out/inventory.json"
$hub export --repo "$out/repo" --to "$out/usb-delta" --have "$out/inventory.json"
$spoke import --data "$out/spoke" "$out/usb-delta"

printf '\ndemo complete: %s\n' "$out"
