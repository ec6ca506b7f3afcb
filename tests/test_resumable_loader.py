"""ResumableTrainLoader: detectron2's training stream, and exact continuation after a restore."""

import io
import itertools
import logging
import random

import numpy as np
import pytest
import torch
from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import TrainingSampler

import luminet_det.engine.train_loader as train_loader_module
from luminet.rng_state import get_rng_state, set_rng_state
from luminet_det.engine import ResumableTrainLoader

N_IMAGES, BATCH, SAMPLER_SEED = 23, 3, 5


def augmenting_mapper(d):
    """Stands in for DatasetMapper: draws from the Python, NumPy and torch generators."""
    return {
        "width": d["width"],
        "height": d["height"],
        "id": d["id"],
        "draws": (float(np.random.rand()), float(torch.rand(1)), random.random()),
    }


@pytest.fixture(scope="module")
def dicts():
    rng = np.random.default_rng(0)  # landscape and portrait images: both aspect-ratio buckets
    return [
        {"id": i, "width": int(rng.integers(50, 150)), "height": int(rng.integers(50, 150))}
        for i in range(N_IMAGES)
    ]


def _seed_all(seed=1):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _take(iterator, k):
    return [[(x["id"], x["draws"]) for x in batch] for batch in itertools.islice(iterator, k)]


def _ours(dicts, workers, grouping):
    return ResumableTrainLoader(
        dicts, mapper=augmenting_mapper, sampler=TrainingSampler(N_IMAGES, seed=SAMPLER_SEED),
        total_batch_size=BATCH, aspect_ratio_grouping=grouping, num_workers=workers,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("grouping", [True, False])
def test_same_stream_as_detectron2(dicts, workers, grouping):
    # Same batches, same order, same augmentation draws as the installed detectron2's loader.
    _seed_all()
    reference = build_detection_train_loader(
        dicts, mapper=augmenting_mapper, sampler=TrainingSampler(N_IMAGES, seed=SAMPLER_SEED),
        total_batch_size=BATCH, aspect_ratio_grouping=grouping, num_workers=workers,
    )  # fmt: skip
    expected = _take(iter(reference), 12)
    _seed_all()
    assert _take(iter(_ours(dicts, workers, grouping)), 12) == expected


@pytest.mark.parametrize("chunked", [False, True], ids=["v0.6-sharding", "main-sharding"])
@pytest.mark.parametrize("workers,grouping", [(0, True), (0, False), (1, True), (2, True),
                                              (3, False)])  # fmt: skip
def test_restored_loader_continues_exactly(dicts, workers, grouping, chunked, monkeypatch):
    monkeypatch.setattr(train_loader_module, "_SHARDS_IN_BATCH_CHUNKS", chunked)
    _seed_all()
    full = _take(iter(_ours(dicts, workers, grouping)), 11)
    buffered = 0
    for k in (1, 5):  # restore after k batches: buckets hold items, workers mid-stream
        _seed_all()
        loader = _ours(dicts, workers, grouping)
        iterator = iter(loader)
        head = _take(iterator, k)
        state = loader.state_dict()
        main_rng = get_rng_state()  # the trainer saves and restores this process's generators
        _seed_all(99)  # a new process: other random state, new loader
        restored = _ours(dicts, workers, grouping)
        restored.load_state_dict(state)
        set_rng_state(main_rng)
        assert head + _take(iter(restored), 11 - k) == full, k
        buffered += sum(len(b) for b in state["buffered"])
    assert buffered > 0 or not grouping  # items waiting in the aspect-ratio buckets were restored


def test_state_is_plain_data_and_a_changed_layout_is_announced(dicts, caplog):
    loader = _ours(dicts, 0, True)
    iterator = iter(loader)
    _take(iterator, 3)
    state = loader.state_dict()
    assert state["fetched"] >= 9 and state["num_workers"] == 0 and state["batch_size"] == BATCH
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["fetched"] == state["fetched"]  # plain data
    other = _ours(dicts, 2, True)
    with caplog.at_level(logging.WARNING, logger="luminet_det"):
        other.load_state_dict(state)
    assert "differs from the checkpoint's" in caplog.text
    seen = [i for b in _take(iter(other), 2) for i, _ in b]
    assert len(seen) == 2 * BATCH
    with pytest.raises(RuntimeError, match="before the loader is iterated"):
        loader.load_state_dict(state)


def test_bad_batch_size_names_the_key(dicts):
    with pytest.raises(ValueError, match="SOLVER.IMS_PER_BATCH 0"):
        ResumableTrainLoader(dicts, mapper=augmenting_mapper, sampler=TrainingSampler(3),
                             total_batch_size=0)  # fmt: skip
