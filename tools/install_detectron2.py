#!/usr/bin/env python
"""Provide detectron2 in the current Python environment.

Routes, tried in order (``--route auto``, the default):

1. ``import detectron2`` already works: nothing to do (details under "Replacing a build" below).
2. ``--source PATH`` or the environment variable ``DETECTRON2_SOURCE``: a local copy of the
   upstream repository, as an archive (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) or an unpacked
   folder (the one holding ``setup.py`` and ``detectron2/``). When set, it is used or this
   script fails; it never falls through to another route.
3. Upstream from GitHub (``git clone --depth 1`` of the main branch), when GitHub is reachable.
4. A Python-only build of the detectron2 0.6 sources that PyPI republishes as the sdist
   ``pb1-detectron2==0.6`` (those sources lack ``detectron2/layers/csrc``).

Routes 2 and 3 build upstream's own ``setup.py`` into a wheel, C++ ops compiled for the CPU (and
for CUDA where torch sees a GPU, or ``FORCE_CUDA=1``): ``--build compiled``, the default. With
``--build python`` (or ``DETECTRON2_BUILD=python``) they build the Python sources alone, with a
``detectron2._C`` module that reports the missing compiled ops clearly instead of failing at
import; route 4 is always built that way.

Every build gets one compatibility fix: ``detectron2.model_zoo`` imports ``pkg_resources``,
which setuptools >= 81 no longer ships (upstream main still does, as of 2026-06), so it is
replaced by a path relative to the module. The 0.6 sources also get ``Image.LINEAR`` ->
``Image.BILINEAR`` (Pillow >= 10) and ``np.int/np.float/np.bool`` -> builtins (numpy >= 1.24),
the changes upstream made after 0.6.

The wheel's version says what it is: ``<upstream version>+git<commit>`` (a git archive or a
clean checkout), ``+src<content hash>`` (any other folder or archive), with ``.pyonly`` appended
for a Python-only build, and ``0.6+pyonly`` for route 4. Wheels are kept in
``.cache/wheels/<key>/`` (the key covers this script, the source, the build kind, Python and
torch), so a second set-up does not compile again.

Replacing a build: a detectron2 installed some other way (not by this script) is never touched.
One that this script installed is kept unless something else is asked for explicitly (a source,
or ``--route`` other than ``auto``); then it is replaced when its version differs.

Usage::

    python tools/install_detectron2.py [--route auto|source|github|pyonly] [--source PATH]
        [--build compiled|python] [--target DIR] [--wheel-only]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEEL_CACHE = REPO_ROOT / ".cache" / "wheels"
GITHUB_URL = "https://github.com/facebookresearch/detectron2.git"
PYPI_SDIST = "pb1-detectron2==0.6"
PYONLY_LABEL = "pyonly"
PYONLY_VERSION = f"0.6+{PYONLY_LABEL}"
ROUTES = ("auto", "source", "github", "pyonly")
BUILDS = ("compiled", "python")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")

#: Local version labels that this script gives its builds (see the module docstring).
OUR_LABEL = re.compile(r"^(pyonly|(git[0-9a-f]{8}|src[0-9a-f]{10})(\.pyonly)?)$")

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
        "Build it with its C++ ops (tools/install_detectron2.py --build compiled) or install "
        "detectron2 from https://github.com/facebookresearch/detectron2 to get them."
    )
'''

PYTHON_ONLY_SETUP_PY = """\
from setuptools import find_packages, setup

PROJECTS = {projects!r}

setup(
    name="detectron2",
    version={version!r},
    description={description!r},
    url="https://github.com/facebookresearch/detectron2",
    license="Apache-2.0",
    packages=find_packages(include=["detectron2", "detectron2.*"]) + list(PROJECTS),
    package_dir=PROJECTS,
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    python_requires=">=3.8",
    install_requires={requires!r},
)
"""


def log(msg: str) -> None:
    print(f"[install_detectron2] {msg}", flush=True)


def run(cmd: list[str], *, env: dict | None = None, timeout: float | None = None,
        heartbeat: float = 0.0, what: str = "") -> int:  # fmt: skip
    """Run ``cmd``; with ``heartbeat`` > 0, log a progress line that often while it runs."""
    log("$ " + " ".join(cmd))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    while True:
        try:
            return proc.wait(timeout=heartbeat or timeout)
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                proc.kill()
                proc.wait()
                raise
            log(f"  ... {what or 'still running'}: {elapsed:.0f} s")


def pip(*args: str, **kwargs) -> int:
    return run([sys.executable, "-m", "pip", *args], **kwargs)


# ---------------------------------------------------------------------------------------------
# What is installed
# ---------------------------------------------------------------------------------------------


def installed_version() -> str | None:
    """Version of the detectron2 that imports here, checked in a fresh interpreter (so a
    half-installed package in this process cannot fool us); "" when it imports but has no
    distribution metadata; None when it does not import."""
    code = (
        "import detectron2, detectron2.modeling, detectron2.engine\n"
        "from importlib import metadata\n"
        "try:\n    print(metadata.version('detectron2'))\n"
        "except metadata.PackageNotFoundError:\n    print('')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "No module named 'detectron2'" not in proc.stderr:
            log("detectron2 is on the path but does not import:\n" + proc.stderr[-2000:])
        return None
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def local_label(version: str) -> str:
    """The part after ``+`` of a version ("" if none)."""
    return version.partition("+")[2]


def built_here(version: str) -> bool:
    """Whether a detectron2 of this version was built by this script."""
    return bool(OUR_LABEL.match(local_label(version)))


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


class Source:
    """An upstream source tree, identified without building it.

    Attributes:
        path: an archive file or a folder.
        label: ``git<commit8>`` or ``src<hash10>`` (the local version label of its builds).
        digest: sha256 of the archive, or of the folder's files (part of the wheel-cache key).
    """

    def __init__(self, path: Path, label: str, digest: str):
        self.path, self.label, self.digest = path, label, digest

    @property
    def is_archive(self) -> bool:
        return self.path.is_file()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".eggs"}


def _source_files(root: Path):
    """The files of a source folder, without build outputs (sorted, relative paths)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIP_DIRS
            and not d.endswith(".egg-info")
            and (rel_dir / d).as_posix() != "detectron2/model_zoo/configs"  # made by setup.py
        )
        for name in sorted(filenames):
            if not name.endswith((".so", ".pyc", ".pyd")):
                yield rel_dir / name


def _git_commit(folder: Path) -> str | None:
    """HEAD of a git checkout without local changes; None otherwise."""
    if not (folder / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # fmt: skip
    return None if dirty else head


def describe_source(path: str | os.PathLike) -> Source:
    """Identify an upstream source archive or folder.

    Raises:
        ValueError: when ``path`` is neither a readable archive nor a detectron2 source folder.
    """
    p = Path(path).expanduser().resolve()
    if p.is_file():
        if not p.name.endswith(ARCHIVE_SUFFIXES):
            raise ValueError(
                f"DETECTRON2_SOURCE {str(path)!r} is a file but not an archive "
                f"({', '.join(ARCHIVE_SUFFIXES)})"
            )
        digest = _sha256_file(p)
        commit = None
        if p.name.endswith(".zip"):
            with zipfile.ZipFile(p) as z:  # GitHub's zips carry the commit as the comment
                comment = z.comment.decode("ascii", "replace").strip()
            commit = comment if re.fullmatch(r"[0-9a-f]{40}", comment) else None
        else:
            try:
                with tarfile.open(p) as tar:  # `git archive` writes the commit into the header
                    commit = tar.pax_headers.get("comment")
            except tarfile.TarError as e:
                raise ValueError(
                    f"DETECTRON2_SOURCE {str(path)!r} could not be read as an archive: {e}"
                ) from e
            if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
                commit = None
        label = f"git{commit[:8]}" if commit else f"src{digest[:10]}"
        return Source(p, label, digest)
    if p.is_dir():
        if not (p / "setup.py").is_file() or not (p / "detectron2" / "__init__.py").is_file():
            raise ValueError(
                f"DETECTRON2_SOURCE {str(path)!r} is a folder without setup.py and "
                "detectron2/__init__.py: name the top folder of the detectron2 repository"
            )
        h = hashlib.sha256()
        for rel in _source_files(p):
            h.update(rel.as_posix().encode() + b"\0")
            h.update(_sha256_file(p / rel).encode())
        digest = h.hexdigest()
        commit = _git_commit(p)
        label = f"git{commit[:8]}" if commit else f"src{digest[:10]}"
        return Source(p, label, digest)
    raise ValueError(f"DETECTRON2_SOURCE {str(path)!r} does not exist")


def unpack_source(source: Source, workdir: Path) -> Path:
    """A private copy of the source tree under ``workdir`` (the build writes into it)."""
    dest = workdir / "src"
    if not source.is_archive:
        ignore = shutil.ignore_patterns(*_SKIP_DIRS, "*.egg-info", "*.so", "*.pyc")
        shutil.copytree(source.path, dest, symlinks=True, ignore=ignore)
        stale = dest / "detectron2" / "model_zoo" / "configs"
        if stale.is_symlink():
            stale.unlink()
        return dest
    dest.mkdir(parents=True)
    if source.path.name.endswith(".zip"):
        with zipfile.ZipFile(source.path) as z:
            z.extractall(dest)
    else:
        with tarfile.open(source.path) as tar:
            tar.extractall(dest, filter="data")
    roots = [d for d in dest.iterdir() if (d / "setup.py").is_file()]
    if (dest / "setup.py").is_file():
        return dest
    if len(roots) != 1 or not (roots[0] / "detectron2" / "__init__.py").is_file():
        raise ValueError(
            f"DETECTRON2_SOURCE {str(source.path)!r} holds no detectron2 repository (expected "
            "setup.py and detectron2/ at the top or in one top folder)"
        )
    return roots[0]


# ---------------------------------------------------------------------------------------------
# Compatibility fixes
# ---------------------------------------------------------------------------------------------

_NUMPY_ALIASES = re.compile(r"\bnp\.(int|float|bool)\b(?!_)")


def write_compiled_ops_stand_in(pkg: Path) -> str:
    """Write ``detectron2/_C.py``, the stand-in for the compiled extension."""
    (pkg / "_C.py").write_text(COMPILED_OPS_MODULE)
    return "detectron2/_C.py: added (reports missing compiled ops)"


def apply_compat_fixes(pkg: Path) -> list[str]:
    """Patch the detectron2 sources in ``pkg`` (the ``detectron2`` folder) in place.

    Returns:
        A line per file changed, for the log.

    Raises:
        RuntimeError: when ``model_zoo.py`` uses ``pkg_resources`` in a way this fix does not
            know (the sources changed).
    """
    changed = []

    def rewrite(path: Path, new_text: str, what: str) -> None:
        if path.read_text() != new_text:
            path.write_text(new_text)
            changed.append(f"{path.relative_to(pkg.parent)}: {what}")

    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text()
        # Pillow >= 10 removed Image.LINEAR (an alias of BILINEAR).
        new = text.replace("Image.LINEAR", "Image.BILINEAR")
        # numpy >= 1.24 removed the np.int / np.float / np.bool aliases of the builtins.
        new = _NUMPY_ALIASES.sub(lambda m: m.group(1), new)
        if new != text:
            rewrite(path, new, "Image.LINEAR / numpy alias fixes")

    # setuptools >= 81 removed pkg_resources; model-zoo configs sit beside the module.
    zoo = pkg / "model_zoo" / "model_zoo.py"
    text = zoo.read_text()
    if "pkg_resources" in text:
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


def _setup_py_literals(setup_py: Path) -> tuple[list[str], dict[str, str]]:
    """``install_requires`` and the ``PROJECTS`` package map of upstream's setup.py."""
    tree = ast.parse(setup_py.read_text())
    requires, projects = None, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PROJECTS" for t in node.targets
        ):
            projects = ast.literal_eval(node.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for kw in node.keywords:
                if kw.arg == "install_requires":
                    requires = ast.literal_eval(kw.value)
    if requires is None:
        raise RuntimeError(f"no literal install_requires in {setup_py}; the sources changed?")
    return requires, projects


def _upstream_version(root: Path) -> str:
    text = (root / "detectron2" / "__init__.py").read_text()
    m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", text, re.M)
    if not m:
        raise RuntimeError(f"no __version__ in {root / 'detectron2' / '__init__.py'}")
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# Wheels
# ---------------------------------------------------------------------------------------------


def _torch_build() -> tuple[str, bool]:
    """torch's version and whether upstream's setup.py will compile the CUDA ops too."""
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    cuda = (torch.cuda.is_available() and CUDA_HOME is not None) or os.environ.get(
        "FORCE_CUDA", "0"
    ) == "1"
    return torch.__version__, cuda


def wheel_cache_dir(*key_parts: str) -> Path:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for part in (*key_parts, sys.version.split()[0], sys.platform):
        h.update(b"\0" + part.encode())
    return WHEEL_CACHE / h.hexdigest()[:12]


def _cached_wheel(out: Path) -> Path | None:
    wheels = sorted(out.glob("detectron2-*.whl"))
    if wheels:
        log(f"reusing {_show(wheels[-1])}")
        return wheels[-1]
    return None


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _built_wheel(out: Path, status: int, what: str) -> Path:
    wheels = sorted(out.glob("detectron2-*.whl"))
    if status != 0 or not wheels:
        raise RuntimeError(f"building {what} failed (see the pip output above)")
    log(f"built {_show(wheels[-1])}")
    return wheels[-1]


def build_source_wheel(source: Source, build: str, jobs: int | None = None) -> Path:
    """Build (or reuse) the wheel of an upstream source tree.

    Args:
        source: see :func:`describe_source`.
        build: "compiled" (upstream's setup.py, C++ ops compiled) or "python" (Python sources
            with the ``_C`` stand-in).
        jobs: parallel compile jobs (``MAX_JOBS``); default: the number of CPUs.

    Returns:
        The wheel's path under ``.cache/wheels/``.

    Raises:
        RuntimeError: when the build fails.
    """
    if build not in BUILDS:
        raise ValueError(f"DETECTRON2_BUILD must be one of {BUILDS}; got {build!r}")
    torch_version, cuda = _torch_build() if build == "compiled" else ("", False)
    out = wheel_cache_dir("source", source.digest, build, torch_version, str(cuda))
    cached = _cached_wheel(out)
    if cached is not None:
        return cached
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="d2-source-") as tmp:
        root = unpack_source(source, Path(tmp))
        for line in apply_compat_fixes(root / "detectron2"):
            log("  patched " + line)
        if build == "compiled":
            jobs = jobs or os.cpu_count() or 1
            env = {**os.environ, "D2_VERSION_SUFFIX": f"+{source.label}", "MAX_JOBS": str(jobs)}
            log(
                f"compiling detectron2's C++ ops ({'CPU and CUDA' if cuda else 'CPU only'}, "
                f"torch {torch_version}, {jobs} jobs); about 2-3 min on 2 cores"
            )
            status = pip("wheel", "--no-deps", "--no-build-isolation", str(root), "-w", str(out),
                         env=env, heartbeat=30.0, what="compiling")  # fmt: skip
            return _built_wheel(out, status, f"detectron2 from {source.path}")
        requires, projects = _setup_py_literals(root / "setup.py")
        version = f"{_upstream_version(root)}+{source.label}.{PYONLY_LABEL}"
        pkg_root = Path(tmp) / "python-only"
        pkg_root.mkdir()
        shutil.copytree(root / "detectron2", pkg_root / "detectron2",
                        ignore=shutil.ignore_patterns("csrc", "*.so"))  # fmt: skip
        zoo_configs = pkg_root / "detectron2" / "model_zoo" / "configs"
        if zoo_configs.is_symlink():
            zoo_configs.unlink()
        shutil.copytree(root / "configs", zoo_configs)
        for target in projects.values():
            shutil.copytree(root / target, pkg_root / target)
        shutil.copy(root / "LICENSE", pkg_root / "LICENSE")
        log("  " + write_compiled_ops_stand_in(pkg_root / "detectron2"))
        (pkg_root / "setup.py").write_text(
            PYTHON_ONLY_SETUP_PY.format(
                projects=projects,
                version=version,
                description="detectron2 Python sources without C++/CUDA ops (LumiNet installer)",
                requires=requires,
            )
        )
        status = pip("wheel", "--no-deps", "--no-build-isolation", str(pkg_root), "-w", str(out))
        return _built_wheel(out, status, f"the Python-only detectron2 from {source.path}")


def build_pyonly_06_wheel() -> Path:
    """Download the ``pb1-detectron2`` 0.6 sdist, patch it and build
    ``detectron2-0.6+pyonly-py3-none-any.whl`` (or reuse it).

    Raises:
        RuntimeError: when the download or the build fails.
    """
    out = wheel_cache_dir("pypi", PYPI_SDIST)
    cached = _cached_wheel(out)
    if cached is not None:
        return cached
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="d2-pyonly-") as tmp:
        workdir = Path(tmp)
        # pip >= 25 refuses this sdist (its `all` extra names a direct URL); pip 24 downloads it.
        status = pip(
            "download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
            PYPI_SDIST, "-d", str(workdir),
        )  # fmt: skip
        sdists = sorted(workdir.glob("pb1-detectron2-*.tar.gz")) + sorted(
            workdir.glob("pb1_*.tar.gz")
        )
        if status != 0 or not sdists:
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
        (build_root / "setup.py").write_text(
            PYTHON_ONLY_SETUP_PY.format(
                projects={},
                version=PYONLY_VERSION,
                description="detectron2 0.6 Python sources without C++/CUDA ops (LumiNet "
                "installer)",
                requires=PYONLY_REQUIRES,
            )
        )
        log("  " + write_compiled_ops_stand_in(build_root / "detectron2"))
        for line in apply_compat_fixes(build_root / "detectron2"):
            log("  patched " + line)
        status = pip("wheel", "--no-deps", "--no-build-isolation", str(build_root), "-w", str(out))
        return _built_wheel(out, status, "the Python-only detectron2 0.6")


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name (``detectron2-<version>-<tags>.whl``)."""
    return wheel.name.split("-")[1]


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


def github_head(timeout: float = 30.0) -> str | None:
    """The commit of upstream's main branch, or None when GitHub cannot be reached."""
    try:
        proc = subprocess.run(["git", "ls-remote", GITHUB_URL, "HEAD"], capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"([0-9a-f]{40})\s", proc.stdout)
    return m.group(1) if proc.returncode == 0 and m else None


def build_github_wheel(build: str) -> Path:
    """Clone upstream's main branch (depth 1) and build it like a source folder.

    Raises:
        RuntimeError: when the clone or the build fails.
    """
    with tempfile.TemporaryDirectory(prefix="d2-github-") as tmp:
        clone = Path(tmp) / "detectron2"
        if run(["git", "clone", "--quiet", "--depth", "1", GITHUB_URL, str(clone)]) != 0:
            raise RuntimeError(f"git clone {GITHUB_URL} failed")
        return build_source_wheel(describe_source(clone), build)


def install_wheel(wheel: Path, target: Path | None) -> None:
    """Install ``wheel`` here (with its requirements), or alone into ``target``.

    Raises:
        RuntimeError: when pip fails or the result does not import.
    """
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        status = pip("install", "--no-deps", "--upgrade", "--target", str(target), str(wheel))
        if status != 0:
            raise RuntimeError(f"pip could not install {wheel.name} into {target}")
        return
    if pip("install", "--quiet", str(wheel)) != 0:
        raise RuntimeError(f"pip could not install {wheel.name}")
    if installed_version() != wheel_version(wheel):
        raise RuntimeError(f"{wheel.name} was installed but detectron2 does not import from it")


def installed_in_target(target: Path) -> str | None:
    infos = sorted(target.glob("detectron2-*.dist-info"))
    return infos[-1].name[len("detectron2-") : -len(".dist-info")] if infos else None


def plan_wheel(route: str, source: str | None, build: str, github_timeout: float):
    """The (wanted version label, function that builds the wheel) of one route, or None when
    the route is unavailable here (GitHub not reachable)."""
    if route == "source":
        src = describe_source(source)
        label = src.label + (f".{PYONLY_LABEL}" if build == "python" else "")
        return label, lambda: build_source_wheel(src, build)
    if route == "github":
        head = github_head(github_timeout)
        if head is None:
            log("GitHub is not reachable from here; skipping the GitHub route")
            return None
        label = f"git{head[:8]}" + (f".{PYONLY_LABEL}" if build == "python" else "")
        return label, lambda: build_github_wheel(build)
    return PYONLY_LABEL, build_pyonly_06_wheel


def routes_to_try(route: str, source: str | None) -> list[str]:
    if route != "auto":
        return [route]
    return ["source"] if source else ["github", "pyonly"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--route",
        choices=ROUTES,
        default=os.environ.get("LUMINET_D2_ROUTE") or "auto",
        help="auto: source when given, else GitHub, else the 0.6 Python-only build "
        "(env LUMINET_D2_ROUTE)",
    )
    parser.add_argument(
        "--source",
        default=os.environ.get("DETECTRON2_SOURCE") or None,
        help="upstream source archive or folder (env DETECTRON2_SOURCE)",
    )
    parser.add_argument(
        "--build",
        choices=BUILDS,
        default=os.environ.get("DETECTRON2_BUILD") or "compiled",
        help="source/GitHub routes: compile the C++ ops, or Python sources only "
        "(env DETECTRON2_BUILD)",
    )
    parser.add_argument(
        "--target",
        type=Path,
        help="install the wheel alone (no requirements) into this folder, for use on "
        "PYTHONPATH beside the environment's own detectron2",
    )
    parser.add_argument(
        "--wheel-only", action="store_true", help="build the wheel, print its path, install nothing"
    )
    parser.add_argument(
        "--github-timeout", type=float, default=30.0, help="seconds to wait for GitHub"
    )
    args = parser.parse_args(argv)
    if args.route == "source" and not args.source:
        parser.error("--route source needs --source PATH or DETECTRON2_SOURCE")
    if args.source and args.route in ("github", "pyonly"):
        parser.error(f"--route {args.route} contradicts DETECTRON2_SOURCE/--source {args.source}")
    if args.build not in BUILDS:
        parser.error(f"DETECTRON2_BUILD must be one of {BUILDS}; got {args.build!r}")

    explicit = args.source is not None or args.route != "auto"
    if args.target is None and not args.wheel_only:
        installed = installed_version()
        if installed is not None and (not built_here(installed) or not explicit):
            how = "built by this script" if built_here(installed) else "not built by this script"
            log(f"detectron2 {installed or '(no version metadata)'} ({how}) already imports; "
                "nothing to do")  # fmt: skip
            if explicit:
                log("DETECTRON2_SOURCE / --route are NOT applied to a detectron2 installed "
                    "outside this script; `python -m pip uninstall detectron2` first to apply "
                    "them")  # fmt: skip
            return 0
    else:
        installed = installed_in_target(args.target) if args.target is not None else None

    for route in routes_to_try(args.route, args.source):
        try:
            plan = plan_wheel(route, args.source, args.build, args.github_timeout)
        except ValueError as e:
            log(str(e))
            return 2
        if plan is None:
            continue
        label, build_wheel = plan
        if installed is not None and local_label(installed) == label and not args.wheel_only:
            log(f"detectron2 {installed} is already installed from that route; nothing to do")
            return 0
        try:
            wheel = build_wheel()
            if args.wheel_only:
                print(wheel)
                return 0
            install_wheel(wheel, args.target)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(f"route {route!r} failed: {e}")
            if route != "github":  # a source that was named, or the last resort
                if route == "source" and args.build == "compiled":
                    log("to skip the compilation, set DETECTRON2_BUILD=python (--build python)")
                return 1
            continue
        where = f" into {args.target}" if args.target else ""
        log(f"installed detectron2 {wheel_version(wheel)}{where} (route {route!r})")
        return 0
    log("could not provide detectron2")
    return 1


if __name__ == "__main__":
    sys.exit(main())
