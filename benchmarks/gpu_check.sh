#!/usr/bin/env bash
# The CUDA paths, proven on a GPU machine, in one prepared run (well under 8 minutes).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Prints the environment (nvidia-smi, torch CUDA, onnxruntime providers), installs onnxruntime-gpu
# from carried chunks when the CUDA provider is missing (benchmarks/device_wheels.sh, docs/gpu.md),
# runs the GPU tests (pytest -m gpu) and the training and scoring benchmarks on CUDA, and leaves
# $OUT/gpu_check.log and $OUT/gpu_figures.json.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
section() { printf '\n=== %s (%s) ===\n' "$*" "$(date +%T)"; }

section "environment"
nvidia-smi || echo "nvidia-smi: not available"
"$PY" --version

if [ -f .device/MANIFEST ] && ls .device/chunks/*/part >/dev/null 2>&1; then
    section "installing carried wheels"
    mkdir -p /tmp/rm-wheels && cat .device/chunks/*/part > /tmp/rm-wheels/all.bin
    offset=0
    while read -r name size sha; do
        tail -c +$((offset + 1)) /tmp/rm-wheels/all.bin | head -c "$size" > "/tmp/rm-wheels/$name"
        echo "$sha  /tmp/rm-wheels/$name" | sha256sum -c - || { echo "chunk join failed for $name"; exit 1; }
        offset=$((offset + size))
    done < .device/MANIFEST
    "$PY" -m pip uninstall -y -q onnxruntime onnxruntime-gpu 2>/dev/null
    "$PY" -m pip install -q --no-deps --no-index /tmp/rm-wheels/*.whl
fi

"$PY" - <<'PYEOF'
import json, os
info = {}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.is_available()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except ImportError as exc:
    info["torch"] = f"missing ({exc})"
try:
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as exc:  # report, don't stop: the CPU checks still run
            info["preload_dlls"] = f"failed: {exc}"
    info["onnxruntime"] = ort.__version__
    info["ort_providers"] = ort.get_available_providers()
except ImportError as exc:
    info["onnxruntime"] = f"missing ({exc})"
for mod in ("numpy", "pandas", "pyarrow", "click", "tqdm", "onnx", "sklearn", "matplotlib", "pytest"):
    try:
        info[mod] = __import__(mod).__version__
    except ImportError:
        info[mod] = "MISSING"
print(json.dumps(info, indent=2))
json.dump(info, open(os.path.join(os.environ.get("OUT", "gpu-check-out"), "environment.json"), "w"), indent=2)
PYEOF

section "GPU tests (pytest -m gpu)"
timeout 150 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests; echo "pytest exit: $?"

section "training benchmark on CUDA"
timeout 170 "$PY" benchmarks/train_throughput.py --device cuda --batch-size 65536 --epochs 2 \
    --json "$OUT/train_gpu.json"; echo "train benchmark exit: $?"

section "scoring benchmark on CUDA"
timeout 170 "$PY" benchmarks/score_throughput.py --device cuda --rows 20000000 \
    --json "$OUT/score_gpu.json"; echo "score benchmark exit: $?"

section "figures"
"$PY" - <<'PYEOF'
import json, os
out = os.environ.get("OUT", "gpu-check-out")
figures = {}
for name in ("environment", "train_gpu", "score_gpu"):
    path = os.path.join(out, f"{name}.json")
    figures[name] = json.load(open(path)) if os.path.exists(path) else None
json.dump(figures, open(os.path.join(out, "gpu_figures.json"), "w"), indent=2)
print(json.dumps(figures, indent=2))
PYEOF
