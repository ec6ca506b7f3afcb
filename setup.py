#!/usr/bin/env python
"""LumiNet knowledge distillation for Detectron2 (luminet_det) and classification (luminet)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name="luminet-det",
    version="0.1.0",
    description="LumiNet perceptual knowledge distillation for Detectron2 and classification",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["luminet", "luminet.*", "luminet_det", "luminet_det.*"]),
    # The classification package needs torch/torchvision only; detection needs detectron2, which
    # is not on PyPI: install it first (README: tools/install_detectron2.py).
    install_requires=["torch>=2.1", "torchvision>=0.16", "numpy", "tqdm", "yacs", "fvcore"],
    extras_require={
        "det": ["pycocotools>=2.0.2", "opencv-python-headless", "matplotlib", "iopath"],
        "demo": ["scikit-learn", "scikit-image", "matplotlib"],
        "test": read_requirements("test.txt"),
    },
)
