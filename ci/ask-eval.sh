#!/usr/bin/env bash
# The held-out answer evaluation on the real Tier A models: the hub builds
# and signs the model bundles, a fresh spoke imports them from a medium and
# stores the set's documents, then `ask-eval` asks every question and scores
# the answers (docs/benchmarks.md has the numbers and how they are counted).
# Usage: bash ci/ask-eval.sh [--release] [WORKDIR] [-- ask-eval options]
# Exits non-zero if any shown statement is unsupported.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug; flags=()
if [ "${1:-}" = --release ]; then profile=release; flags=(--release); shift; fi
out="${1:-target/ask-eval}"; shift || true
[ "${1:-}" = -- ] && shift
rm -rf "$out"; mkdir -p "$out"
bash ci/fetch-models.sh .cache/models >/dev/null
cargo build "${flags[@]}" -q --workspace --bins
bin=target/$profile
models=.cache/models/src
$bin/hub init --repo "$out/repo" --keys "$out/keys" >/dev/null
$bin/hub model build "$models/all-minilm-l6-v2" --out "$out/embedding.bundle" >/dev/null
$bin/hub model build "$models/smollm2-135m-instruct" --out "$out/generation.bundle" >/dev/null
$bin/hub publish --repo "$out/repo" --keys "$out/keys" "$out/embedding.bundle" "$out/generation.bundle" >/dev/null
$bin/hub export --repo "$out/repo" --to "$out/usb" >/dev/null
$bin/spoke init --data "$out/spoke" --trust "$out/repo/metadata/1.root.json" >/dev/null
$bin/spoke import --data "$out/spoke" "$out/usb" >/dev/null
for f in appliance/gateway/eval/documents/*.txt; do
  $bin/spoke doc add --data "$out/spoke" --kind evidence "$f" >/dev/null
done
$bin/ask-eval --data "$out/spoke" --questions appliance/gateway/eval/questions.json "$@" | tee "$out/report.txt"
