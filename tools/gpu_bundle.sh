#!/usr/bin/env bash
# Build an offline bundle for a CUDA machine that has Python 3.12 and torch/torchvision
# preinstalled but no network. It ships the detectron2 this project's set-up uses:
#
# - with DETECTRON2_SOURCE (an upstream archive or folder; `make gpu-bundle` passes it on): that
#   source as bundle/gpu/detectron2-source.tar.gz, to compile detectron2's C++/CUDA ops on the GPU
#   machine against its own torch (a wheel compiled here would fit this machine's Python 3.11
#   and torch only), plus a Python-only wheel of the same source for machines without a compiler;
# - without it: the Python-only wheel of detectron2 0.6 (tools/install_detectron2.py's last route).
#
# Beside it: this project's wheel and the small dependencies such a machine usually lacks.
#
#   bash tools/gpu_bundle.sh [OUT_DIR]            # default: bundle/gpu
#   # on the GPU machine, from the repository root (which holds OUT_DIR):
#   bash bundle/gpu/install.sh                    # compile from the shipped source (if any)
#   bash bundle/gpu/install.sh --python-only      # or: the Python-only wheel, no compiler needed
#
# Status: built and its size checked here; not yet installed on a GPU machine (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=${1:-bundle/gpu}
TARGET_PY=${BUNDLE_PYTHON_VERSION:-3.12}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
           --platform manylinux1_x86_64)

# Pure-Python packages (built or fetched as py3-none-any wheels, any Python 3 works).
# setuptools builds detectron2 there (pip wheel --no-build-isolation).
PURE=(
  fvcore==0.1.5.post20221221 iopath==0.1.9 yacs==0.1.8 termcolor==3.3.0 omegaconf==2.3.1
  hydra-core==1.3.8 antlr4-python3-runtime==4.9.3 portalocker tabulate==0.10.0
  cloudpickle==3.1.3 tqdm==4.70.1 setuptools
)
# Wheels for the target Python and platform (ninja: parallel C++/CUDA compilation); numpy is
# the machine's own.
BINARY=(pycocotools==2.0.11 packaging==26.4 ninja)
# ... and with their requirements (black: required by detectron2 main).
BINARY_WITH_DEPS=(black==26.5.1)

rm -rf "$OUT"
mkdir -p "$OUT/wheels"

if [[ -n "${DETECTRON2_SOURCE:-}" ]]; then
  echo "[gpu_bundle] detectron2 from $DETECTRON2_SOURCE: the source, and its Python-only wheel"
  if [[ -d "$DETECTRON2_SOURCE" ]]; then
    tar -czf "$OUT/detectron2-source.tar.gz" --exclude=.git --exclude=build \
      -C "$(dirname "$DETECTRON2_SOURCE")" "$(basename "$DETECTRON2_SOURCE")"
  else
    cp "$DETECTRON2_SOURCE" "$OUT/detectron2-source.tar.gz"
  fi
  d2_wheel=$("$PY" tools/install_detectron2.py --source "$DETECTRON2_SOURCE" --build python \
    --wheel-only | tail -n 1)
else
  echo "[gpu_bundle] detectron2 0.6 (Python-only build)"
  d2_wheel=$("$PY" tools/install_detectron2.py --route pyonly --wheel-only | tail -n 1)
fi
cp "$d2_wheel" "$OUT/wheels/"

echo "[gpu_bundle] this project"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation . -w "$OUT/wheels"

echo "[gpu_bundle] pure-Python dependencies"
"$PY" -m pip wheel --quiet --no-deps "${PURE[@]}" -w "$OUT/wheels"

echo "[gpu_bundle] wheels for Python $TARGET_PY"
"$PY" -m pip download --quiet --only-binary=:all: --implementation cp \
  --python-version "$TARGET_PY" "${PLATFORMS[@]}" --no-deps "${BINARY[@]}" -d "$OUT/wheels"
"$PY" -m pip download --quiet --only-binary=:all: --implementation cp \
  --python-version "$TARGET_PY" "${PLATFORMS[@]}" "${BINARY_WITH_DEPS[@]}" -d "$OUT/wheels"

cat > "$OUT/install.sh" <<'INSTALL'
#!/usr/bin/env bash
# Offline install of LumiNet-Det and detectron2 from the files beside this script. Run it from
# the repository root (tools/install_detectron2.py builds detectron2).
#   bash bundle/gpu/install.sh [--python-only] [extra pip arguments]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python_only=0
if [[ "${1:-}" == "--python-only" ]]; then python_only=1; shift; fi
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$here/wheels"
python3 -m pip install luminet-det pycocotools fvcore iopath omegaconf hydra-core black \
  packaging setuptools ninja "$@"
if [[ -f "$here/detectron2-source.tar.gz" && $python_only == 0 ]]; then
  # C++ ops, and CUDA ops when torch sees a GPU; a few minutes
  python3 tools/install_detectron2.py --source "$here/detectron2-source.tar.gz"
else
  python3 -m pip install detectron2 "$@"
fi
python3 -c "import detectron2, luminet, luminet_det; from importlib.metadata import version; \
from luminet_det.evaluation import coco_fast_eval_available as f; \
print('ok: detectron2', version('detectron2'), '| fast COCO evaluation:', f())"
INSTALL
chmod +x "$OUT/install.sh"

ls -1 "$OUT" "$OUT/wheels"
size=$(du -sb "$OUT" | cut -f1)
echo "[gpu_bundle] $OUT: $(( size / 1024 )) KiB in $(ls "$OUT/wheels" | wc -l) wheels"
if (( size > 64 * 1024 * 1024 )); then
  echo "[gpu_bundle] bundle exceeds 64 MiB" >&2
  exit 1
fi
