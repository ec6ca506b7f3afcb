"""Shared pytest set-up: deterministic, CPU-only, few threads (the CI machine has 2 cores)."""

import os

import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
