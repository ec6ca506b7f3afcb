"""Shared pytest set-up: deterministic, CPU-only, few threads (the CI machine has 2 cores)."""

import os

import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One intra-op thread per process: the tests' models are tiny, and several processes (DataLoader
# workers, DDP ranks, CLI subprocesses) share 2 cores; more threads made them 5-10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
