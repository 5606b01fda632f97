#!/usr/bin/env bash
# The GPU check, for a short loan of a CUDA machine: one JSON line per figure on stdout.
#
#   1. the device, torch and Triton versions;
#   2. the CUDA tests (tests/test_pack.py, tests/test_philox.py: the fused Triton noise
#      kernel against the torch Philox stream, philox packs on CUDA against CPU and alone);
#   3. bench_population.py: packs of R = 256, 1024 and 4096 restarts (rng philox: one
#      noise launch and one data-order call per update) against the plain loop
#      (nn.Module + torch.optim + GradientNoise), deep-20 MNIST net, batch 128;
#   4. bench_noise_overhead.py: the noise's share of a pack step at R = 1024.
#
# Each stage has its own time limit; the whole script stays under 8 minutes, so a
# loan leaves room for one rerun. Needs a CUDA build of torch (it brings Triton) and
# the project installed: pip install -e '.[dev]'. MNIST is read from
# $ROBUSTNESS_DATA_DIR, else ./data/mnist, else ../shared/data/mnist.
#
#   bash benchmarks/gpu_check.sh                # .venv/bin/python, else python3
#   PYTHON=python bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
if [[ -z ${ROBUSTNESS_DATA_DIR:-} && ! -d data/mnist && -d ../shared/data/mnist ]]; then
  export ROBUSTNESS_DATA_DIR=../shared/data/mnist
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

"$PY" - <<'EOF' || exit 2
import json, sys, torch
if not torch.cuda.is_available():
    print(json.dumps({"figure": "device", "error": "torch sees no CUDA device"}))
    sys.exit(1)
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = None
free, total = torch.cuda.mem_get_info()
print(json.dumps({"figure": "device", "name": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "triton": triton_version, "free_gib": round(free / 2**30, 1),
                  "total_gib": round(total / 2**30, 1)}))
EOF

timeout 150 "$PY" -m pytest -q -p no:cacheprovider -k cuda tests/test_pack.py tests/test_philox.py \
  --junitxml="$tmp/cuda.xml" >"$tmp/cuda.log" 2>&1 || status=1
"$PY" - "$tmp/cuda.xml" "$tmp/cuda.log" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
try:
    suite = ET.parse(sys.argv[1]).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    out = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError, IndexError):
    out = {"error": "no test report (timed out?)"}
out["log_tail"] = open(sys.argv[2]).read()[-600:] if out.get("failures") or out.get("errors") or "error" in out else ""
print(json.dumps({"figure": "cuda_tests", **out}))
EOF

timeout 240 "$PY" benchmarks/bench_population.py --device cuda --rng philox --restarts 256,1024,4096 --rounds 3 \
  --json >"$tmp/pop.json" 2>"$tmp/pop.err" || status=1
"$PY" - "$tmp/pop.json" "$tmp/pop.err" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith("{")]
if not lines:
    print(json.dumps({"figure": "pack_vs_loop", "error": open(sys.argv[2]).read()[-600:]}))
    sys.exit()
b = json.loads(lines[-1])
for r in b["results"]:
    print(json.dumps({"figure": "pack_vs_loop", "variant": r["variant"], "R": r["R"], "step_ms": round(r["step_ms"], 3),
                      "restart_steps_per_s": round(r["restart_steps_per_s"], 1),
                      "throughput_vs_loop": round(r["throughput_vs_loop"], 1), "gemm_fraction": round(r["gemm_fraction"], 3),
                      "dataset": b["settings"]["dataset"], "rng": b["settings"]["rng"]}))
for t in b["targets"]:
    print(json.dumps({"figure": "target", **t}))
EOF

timeout 120 "$PY" benchmarks/bench_noise_overhead.py --device cuda --rng philox --restarts 1024 --quick \
  --json >"$tmp/noise.json" 2>"$tmp/noise.err" || status=1
"$PY" - "$tmp/noise.json" "$tmp/noise.err" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith("{")]
if not lines:
    print(json.dumps({"figure": "noise_overhead", "error": open(sys.argv[2]).read()[-600:]}))
    sys.exit()
b = json.loads(lines[-1])
for r in b["results"]:
    print(json.dumps({"figure": "noise_overhead", **{k: v for k, v in r.items() if not isinstance(v, list)}}))
EOF
exit $status
