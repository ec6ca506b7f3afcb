#!/usr/bin/env bash
# Build an offline bundle of wheels for a CUDA machine that has Python 3.12 and torch/torchvision
# preinstalled but no network: the Python-only detectron2 wheel, this project, and the small
# dependencies such a machine usually lacks. Stays well under 64 MiB.
#
#   bash tools/gpu_bundle.sh [OUT_DIR]            # default: bundle/gpu
#   # on the GPU machine, from the repo root (one line):
#   python3 -m pip install --no-index --find-links bundle/gpu/wheels luminet-det detectron2 pycocotools
#
# Status: built and its size checked here; not yet installed on a GPU machine (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=${1:-bundle/gpu}
TARGET_PY=${BUNDLE_PYTHON_VERSION:-3.12}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64)

# Pure-Python packages (built or fetched as py3-none-any wheels, any Python 3 works).
PURE=(
  fvcore==0.1.5.post20221221 iopath==0.1.9 yacs==0.1.8 termcolor==3.3.0 omegaconf==2.3.1
  hydra-core==1.3.8 antlr4-python3-runtime==4.9.3 portalocker tabulate==0.10.0
  cloudpickle==3.1.3 tqdm==4.70.1
)
# Compiled packages: fetched as binary wheels for the target Python.
BINARY=(pycocotools==2.0.11)

rm -rf "$OUT"
mkdir -p "$OUT/wheels"

echo "[gpu_bundle] detectron2 (Python-only build)"
d2_wheel=$("$PY" tools/install_detectron2.py --wheel-only | tail -n 1)
cp "$d2_wheel" "$OUT/wheels/"

echo "[gpu_bundle] this project"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation . -w "$OUT/wheels"

echo "[gpu_bundle] pure-Python dependencies"
"$PY" -m pip wheel --quiet --no-deps "${PURE[@]}" -w "$OUT/wheels"

echo "[gpu_bundle] compiled dependencies for Python $TARGET_PY"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version "$TARGET_PY" "${PLATFORMS[@]}" "${BINARY[@]}" -d "$OUT/wheels"

cat > "$OUT/install.sh" <<'INSTALL'
#!/usr/bin/env bash
# Offline install of LumiNet-Det and detectron2 (Python-only build) from the wheels beside this file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 -m pip install --no-index --find-links "$here/wheels" luminet-det detectron2 pycocotools "$@"
python3 -c "import detectron2, luminet, luminet_det; print('ok: detectron2', detectron2.__version__)"
INSTALL
chmod +x "$OUT/install.sh"

ls -1 "$OUT/wheels"
size=$(du -sb "$OUT" | cut -f1)
echo "[gpu_bundle] $OUT: $(( size / 1024 )) KiB in $(ls "$OUT/wheels" | wc -l) wheels"
if (( size > 64 * 1024 * 1024 )); then
  echo "[gpu_bundle] bundle exceeds 64 MiB" >&2
  exit 1
fi
