#!/usr/bin/env bash
# Benchmarks the Tier A model runtime (crate `models`, bin models-bench)
# against llama.cpp (PyPI llama-cpp-python, same GGUF, same threads) and
# sentence-transformers (PyPI, CPU torch) in one run, and writes the
# `## models-bench` section of docs/benchmarks.md (only that section).
# Not part of ci/test.sh: it downloads ~6 GB of Python packages the first time
# and takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${BENCH_THREADS:-$(nproc)}"

bash ci/fetch-models.sh .cache/models >&2
src="$(cd .cache/models/src && pwd)"
gguf="$(ls "$src"/smollm2-135m-instruct/*.gguf)"

venv=.cache/bench-venv
# llama.cpp is built from source with AVX-512 (VNNI, VBMI, BF16) and without
# AMX: its native build (which enables AMX on CPUs that report it) crashed
# in its first decode on this machine.
llama_cmake="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF"
[ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
"$venv/bin/python3" -c 'import llama_cpp' 2>/dev/null \
  || CMAKE_BUILD_PARALLEL_LEVEL="$threads" CMAKE_ARGS="$llama_cmake" \
       "$venv/bin/pip" install -q --no-cache-dir llama-cpp-python==0.3.36 >&2
"$venv/bin/python3" -c 'import sentence_transformers' 2>/dev/null \
  || "$venv/bin/pip" install -q sentence-transformers==6.2.0 >&2

# The build measured is the one the appliance ships: --release with no
# target-cpu, because the generator's kernels and candle's GEMM pick
# AVX-512/AVX2 at run time. BENCH_RUSTFLAGS="-C target-cpu=native" or
# BENCH_PROFILE=dev measure other builds (in their own target directory).
profile="${BENCH_PROFILE:-release}"
rustflags="${BENCH_RUSTFLAGS-}"
if [ -n "$rustflags" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/bench-rustflags}"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
RUSTFLAGS="$rustflags" cargo build -q --profile "$profile" -p models --bin models-bench >&2
dir="$profile"; [ "$profile" = dev ] && dir=debug
bin="$CARGO_TARGET_DIR/$dir/models-bench"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin" sentences > "$tmp/sentences.txt"
export RAYON_NUM_THREADS="$threads"
echo "bench-models: candle generate" >&2
"$bin" generate "$src" > "$tmp/gen.json"
for backend in $("$bin" backends); do
  echo "bench-models: embed ($backend)" >&2
  "$bin" embed "$src" "$backend" >> "$tmp/emb.json"
done

echo "bench-models: llama-cpp-python" >&2
"$venv/bin/python3" - "$gguf" "$tmp/gen.json" "$threads" > "$tmp/llama.json" <<'EOF'
import json, resource, sys, time
import llama_cpp
from llama_cpp import Llama
path, gen, threads = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512, verbose=False)
toks = llm.tokenize(gen["prompt"].encode(), add_bos=False, special=True)
n_decode = gen["decode_tokens"]
best_p, best_d = 1e9, 1e9
for i in range(4):
    llm.reset()
    t0 = time.perf_counter(); llm.eval(toks); t1 = time.perf_counter()
    for _ in range(n_decode):
        tok = llm.sample(temp=0.0)
        llm.eval([tok])
    t2 = time.perf_counter()
    if i:  # the first run warms up
        best_p, best_d = min(best_p, t1 - t0), min(best_d, t2 - t1)
print(json.dumps({"version": llama_cpp.__version__, "prompt_tokens": len(toks),
                  "prompt_tok_s": len(toks) / best_p, "decode_tok_s": n_decode / best_d,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
EOF

echo "bench-models: sentence-transformers" >&2
"$venv/bin/python3" - "$src/all-minilm-l6-v2" "$tmp/sentences.txt" "$threads" > "$tmp/st.json" 2>/dev/null <<'EOF'
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
import sentence_transformers
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
m.max_seq_length = 256
s = open(sys.argv[2]).read().splitlines()
m.encode(s[:64], batch_size=32, normalize_embeddings=True)
best = 1e9
for _ in range(2):
    t = time.perf_counter()
    m.encode(s, batch_size=32, normalize_embeddings=True)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"version": sentence_transformers.__version__, "torch": torch.__version__,
                  "sentences_s": len(s) / best,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
EOF

python3 - "$tmp" "$rustflags" "$threads" "$profile" <<'EOF'
import json, platform, re, subprocess, sys
tmp, rustflags, threads, profile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
g = json.load(open(f"{tmp}/gen.json"))
es = [json.loads(line) for line in open(f"{tmp}/emb.json")]
l, s = json.load(open(f"{tmp}/llama.json")), json.load(open(f"{tmp}/st.json"))
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
r = lambda a, b: f"{a / b:.2f}×"
section = f"""## models-bench

`ci/bench-models.sh` (not part of CI): crate `models` (candle 0.11.1, cargo
profile `{profile}`{' (dependencies at opt-level 2)' if profile == 'dev' else ''}, `RUSTFLAGS="{rustflags}"`, {rustc}) against llama.cpp through
llama-cpp-python {l['version']} (same GGUF, {threads} threads; built from source with
AVX-512 VNNI/VBMI/BF16, without AMX, see the script) and
sentence-transformers {s['version']} (torch {s['torch']}, CPU, {threads} threads).
Machine: {cpu}, {threads} threads. Best of several runs after a warm-up.

SmolLM2-135M-Instruct Q4_1 GGUF. Ours (own forward pass and kernels, GGUF read
with candle): {g['quantization']}.
llama.cpp runs the Q4_1 weights as stored. Prompt of {g['prompt_tokens']} tokens,
{g['decode_tokens']} greedy tokens.

| | ours (`models`) | llama.cpp | ratio (target) |
| --- | --- | --- | --- |
| prompt, tok/s | {g['prompt_tok_s']:.0f} | {l['prompt_tok_s']:.0f} | {r(g['prompt_tok_s'], l['prompt_tok_s'])} (≥ 0.8×) |
| decode, tok/s | {g['decode_tok_s']:.1f} | {l['decode_tok_s']:.1f} | {r(g['decode_tok_s'], l['decode_tok_s'])} (≥ 1.0×) |
| peak RSS, MiB | {g['peak_rss_mib']:.0f} | {l['peak_rss_mib']:.0f} | |

all-MiniLM-L6-v2 (safetensors, F32), {es[0]['sentences']} short sentences, batch {es[0]['batch']}. Ours is our own
BERT forward pass (sequences unpadded, side by side); its dense layers run on
each backend this machine has: `amx-bf16` (weights and activations rounded
to BF16 on Intel AMX tiles, F32 accumulation; what the appliance picks when
the CPU has AMX) and `f32` (the `gemm` crate). sentence-transformers pads each
batch, longest first.

| | ours (`models`) | sentence-transformers | ratio (target) |
| --- | --- | --- | --- |
""" + "".join(f"| sentences/s, {e['backend']} | {e['sentences_s']:.0f} | {s['sentences_s']:.0f} | {r(e['sentences_s'], s['sentences_s'])} (≥ 1.5×) |\n" for e in es) + "".join(f"| peak RSS MiB, {e['backend']} | {e['peak_rss_mib']:.0f} | {s['peak_rss_mib']:.0f} | |\n" for e in es) + f"""
"""
p = "docs/benchmarks.md"
doc = open(p).read()
m = re.search(r"^## models-bench\n.*?(?=^## |\Z)", doc, flags=re.S | re.M)
doc = doc[: m.start()] + section + doc[m.end():] if m else doc.rstrip("\n") + "\n\n" + section
open(p, "w").write(doc.rstrip("\n") + "\n")
print(section)
EOF
