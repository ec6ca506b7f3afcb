#!/usr/bin/env python
"""Provide detectron2 in the current Python environment.

Routes, tried in order:

1. ``import detectron2`` already works: nothing to do.
2. Upstream from GitHub (``pip install git+https://github.com/facebookresearch/detectron2.git``):
   what a user with internet access gets, C++/CUDA ops included.
3. A Python-only build of the detectron2 0.6 sources that PyPI republishes as the sdist
   ``pb1-detectron2==0.6``. Those sources lack ``detectron2/layers/csrc``, so this script builds
   a pure-Python wheel named ``detectron2`` (version ``0.6+pyonly``) with four compatibility fixes
   for current Pillow / numpy / setuptools and a ``detectron2._C`` module that reports the
   missing compiled ops clearly instead of failing at import. The wheel is kept under
   ``.cache/wheels/<hash of this script>/`` so ``tools/gpu_bundle.sh`` can ship it to an
   offline machine.

What the Python-only build lacks: rotated boxes, deformable convolution and the fast C++ COCO
evaluation (our code passes ``use_fast_impl=False`` to ``COCOEvaluator`` in that case).
Axis-aligned Faster/Mask R-CNN work fully: torchvision provides ROIAlign and NMS.

Usage::

    python tools/install_detectron2.py [--route auto|upstream|pyonly] [--wheel-only]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The wheel cache is keyed by this script's content, so a change to the fixes rebuilds the wheel.
WHEEL_DIR = (
    REPO_ROOT / ".cache" / "wheels" / hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
)
UPSTREAM = "git+https://github.com/facebookresearch/detectron2.git"
PYPI_SDIST = "pb1-detectron2==0.6"
PYONLY_VERSION = "0.6+pyonly"

# Runtime requirements of detectron2 0.6 (its own list, minus the formatter `black`, which only
# LazyConfig.save uses, and `future`/`pydot`, which only the caffe2 exporter uses).
PYONLY_REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
]

COMPILED_OPS_MODULE = '''\
"""detectron2's compiled extension is absent: this build holds detectron2's Python sources only.

Written by the LumiNet project's tools/install_detectron2.py. Importing this module works so that
the Python parts of detectron2 load; asking it for a compiled op raises an error that says so.
"""

PYTHON_ONLY_BUILD = True


class MissingCompiledOpError(AttributeError):
    """Raised for any compiled op; an AttributeError so that ``hasattr`` answers False."""


def get_compiler_version():
    return "none (Python-only detectron2 build)"


def get_cuda_version():
    return "none (Python-only detectron2 build)"


def has_cuda():
    return False


def __getattr__(name):
    raise MissingCompiledOpError(
        f"detectron2._C.{name} is unavailable: this detectron2 was built from its Python sources "
        "without C++/CUDA ops (rotated boxes, deformable convolution, fast COCO evaluation). "
        "Install detectron2 from https://github.com/facebookresearch/detectron2 to get them."
    )
'''

SETUP_PY = f'''\
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="{PYONLY_VERSION}",
    description="detectron2 0.6 Python sources without C++/CUDA ops (LumiNet install script)",
    url="https://github.com/facebookresearch/detectron2",
    license="Apache-2.0",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    python_requires=">=3.8",
    install_requires={PYONLY_REQUIRES!r},
)
'''


def log(msg: str) -> None:
    print(f"[install_detectron2] {msg}", flush=True)


def pip(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args]
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, timeout=timeout, check=False)


def detectron2_importable() -> bool:
    """Check in a fresh interpreter, so a half-installed package in this process cannot fool us."""
    if importlib.util.find_spec("detectron2") is None:
        return False
    proc = subprocess.run(
        [sys.executable, "-c", "import detectron2, detectron2.modeling, detectron2.engine"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        log("detectron2 is on the path but does not import:\n" + proc.stderr[-2000:])
    return proc.returncode == 0


def github_reachable(timeout: float = 30.0) -> bool:
    url = UPSTREAM.removeprefix("git+")
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--heads", url], capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def try_upstream(timeout: float) -> bool:
    if not github_reachable():
        log("GitHub is not reachable from here; skipping the upstream route")
        return False
    log(f"trying upstream detectron2 ({UPSTREAM}); this compiles its C++ ops")
    try:
        proc = pip("install", "--no-build-isolation", UPSTREAM, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"upstream install did not finish within {timeout:.0f} s")
        return False
    return proc.returncode == 0 and detectron2_importable()


# ---------------------------------------------------------------------------------------------
# The Python-only build
# ---------------------------------------------------------------------------------------------

_NUMPY_ALIASES = re.compile(r"\bnp\.(int|float|bool)\b(?!_)")


def apply_compat_fixes(pkg: Path) -> list[str]:
    """Patch the detectron2 0.6 sources in ``pkg`` (the ``detectron2`` folder) in place.

    Returns a line per file changed, for the log.
    """
    changed = []

    def rewrite(path: Path, new_text: str, what: str) -> None:
        if path.read_text() != new_text:
            path.write_text(new_text)
            changed.append(f"{path.relative_to(pkg.parent)}: {what}")

    # 1. `from detectron2 import _C` must work; compiled ops report themselves as missing.
    (pkg / "_C.py").write_text(COMPILED_OPS_MODULE)
    changed.append("detectron2/_C.py: added (reports missing compiled ops)")

    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text()
        new = text
        # 2. Pillow >= 10 removed Image.LINEAR (an alias of BILINEAR).
        new = new.replace("Image.LINEAR", "Image.BILINEAR")
        # 3. numpy >= 1.24 removed the np.int / np.float / np.bool aliases of the builtins.
        new = _NUMPY_ALIASES.sub(lambda m: m.group(1), new)
        if new != text:
            rewrite(path, new, "Image.LINEAR / numpy alias fixes")

    # 4. setuptools >= 81 removed pkg_resources; model-zoo configs sit beside the module.
    zoo = pkg / "model_zoo" / "model_zoo.py"
    text = zoo.read_text()
    new = text.replace("import pkg_resources\n", "")
    new = re.sub(
        r"pkg_resources\.resource_filename\(\s*\"detectron2\.model_zoo\",\s*"
        r"os\.path\.join\(\"configs\", config_path\)\s*\)",
        'os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", config_path)',
        new,
    )
    if "pkg_resources" in new:
        raise RuntimeError(f"could not remove pkg_resources from {zoo}; the sources changed?")
    rewrite(zoo, new, "pkg_resources -> path relative to the module")
    return changed


def build_pyonly_wheel(workdir: Path) -> Path:
    """Download the sdist, patch it and build ``detectron2-0.6+pyonly-py3-none-any.whl``."""
    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    existing = sorted(WHEEL_DIR.glob("detectron2-0.6+pyonly-*.whl"))
    if existing:
        log(f"reusing {existing[-1].relative_to(REPO_ROOT)}")
        return existing[-1]

    # pip >= 25 refuses this sdist (its `all` extra names a direct URL); pip 24 downloads it.
    proc = pip(
        "download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
        PYPI_SDIST, "-d", str(workdir),
    )  # fmt: skip
    sdists = sorted(workdir.glob("pb1-detectron2-*.tar.gz")) + sorted(workdir.glob("pb1_*.tar.gz"))
    if proc.returncode != 0 or not sdists:
        raise RuntimeError(
            f"could not download {PYPI_SDIST}. pip >= 25 refuses it; use pip < 25 "
            "(`python -m pip install 'pip<25'`), or install detectron2 from GitHub."
        )
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(workdir, filter="data")
    src_root = next(p for p in workdir.iterdir() if p.is_dir() and (p / "detectron2").is_dir())

    build_root = workdir / "build-pyonly"
    build_root.mkdir()
    os.replace(src_root / "detectron2", build_root / "detectron2")
    (build_root / "LICENSE").write_bytes((src_root / "LICENSE").read_bytes())
    (build_root / "setup.py").write_text(SETUP_PY)
    for line in apply_compat_fixes(build_root / "detectron2"):
        log("  patched " + line)

    proc = pip("wheel", "--no-deps", "--no-build-isolation", str(build_root), "-w", str(WHEEL_DIR))
    wheels = sorted(WHEEL_DIR.glob("detectron2-0.6+pyonly-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError("building the Python-only detectron2 wheel failed (see pip output)")
    log(f"built {wheels[-1].relative_to(REPO_ROOT)}")
    return wheels[-1]


def install_pyonly() -> bool:
    with tempfile.TemporaryDirectory(prefix="d2-pyonly-") as tmp:
        wheel = build_pyonly_wheel(Path(tmp))
    proc = pip("install", str(wheel))
    return proc.returncode == 0 and detectron2_importable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--route",
        choices=["auto", "upstream", "pyonly"],
        default=os.environ.get("LUMINET_D2_ROUTE", "auto"),
        help="auto: upstream, falling back to the Python-only build (env LUMINET_D2_ROUTE)",
    )
    parser.add_argument(
        "--upstream-timeout", type=float, default=600.0, help="seconds allowed for the git install"
    )
    parser.add_argument(
        "--wheel-only",
        action="store_true",
        help="only build the Python-only wheel into .cache/wheels (for tools/gpu_bundle.sh)",
    )
    args = parser.parse_args(argv)

    if args.wheel_only:
        with tempfile.TemporaryDirectory(prefix="d2-pyonly-") as tmp:
            print(build_pyonly_wheel(Path(tmp)))
        return 0

    if detectron2_importable():
        import detectron2  # noqa: F401  (only to report where it lives)

        log(f"detectron2 {detectron2.__version__} already importable; nothing to do")
        return 0
    if args.route in ("auto", "upstream") and try_upstream(args.upstream_timeout):
        log("installed upstream detectron2")
        return 0
    if args.route == "upstream":
        log("upstream install failed and --route upstream forbids the fallback")
        return 1
    log("falling back to the Python-only build of detectron2 0.6 from PyPI")
    if install_pyonly():
        log(f"installed detectron2 {PYONLY_VERSION} (Python sources only, no C++/CUDA ops)")
        return 0
    log("could not provide detectron2")
    return 1


if __name__ == "__main__":
    sys.exit(main())
