"""Shared pytest set-up: deterministic, CPU-only, few threads (the CI machine has 2 cores)."""

import logging
import os

import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One intra-op thread per process: the tests' models are tiny, and several processes (DataLoader
# workers, DDP ranks, CLI subprocesses) share 2 cores; more threads made them 5-10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Every test starts with one intra-op thread, even if an earlier test (a tool that takes
    --threads, a trainer's NUM_THREADS) changed it; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _project_logs_reach_pytest():
    """The project's loggers propagate to the root logger (where pytest's ``caplog`` listens) in
    every test, even after an earlier test ran a command-line entry in-process that turned
    propagation off for its console handlers (``luminet.engine.setup_logging``, detectron2's
    ``setup_logger(name="luminet_det")``); restored afterwards."""
    loggers = [logging.getLogger(name) for name in ("luminet", "luminet_det")]
    before = [log.propagate for log in loggers]
    for log in loggers:
        log.propagate = True
    yield
    for log, value in zip(loggers, before, strict=True):
        log.propagate = value


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
