"""detectron2's training data stream, with a position that can be saved and restored exactly.

:class:`ResumableTrainLoader` yields the same batches, in the same order and with the same random
augmentations, as ``detectron2.data.build_detection_train_loader(cfg)`` of the installed
detectron2 (v0.6 or upstream main), for any number of data-loader workers and with or without
aspect-ratio grouping. In addition, :meth:`~ResumableTrainLoader.state_dict` describes where the
stream stands after the batches handed out so far, and a fresh loader that loads it continues
with exactly the next batch:

* how many items (or batches) were fetched from the workers, so the sampler is fast-forwarded
  to the same place (its stream is recomputed from its seed: cheap, no image is read);
* the items waiting in the aspect-ratio buckets, as sampler indices plus the random state their
  mapping started from; they are mapped again on load, with identical results;
* with workers, each worker's random state after the last item it delivered (the augmentation
  draws of a worker's next item continue from there), and which worker delivers next.

Every item carries a small tag (random states of about 13 kB) from the worker to the main
process; the model never sees it. Random draws of the main process (model, sampling of ROIs) are
the trainer's to save (see :mod:`luminet_det.engine.resume_hook`).
"""

from __future__ import annotations

import inspect
import logging
import operator
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.data import DatasetFromList, MapDataset, build_detection_train_loader
from detectron2.data.build import worker_init_reset_seed
from detectron2.data.common import ToIterableDataset
from detectron2.utils import comm

from luminet.rng_state import set_rng_state

__all__ = ["ResumableTrainLoader", "cpu_rng_state"]

logger = logging.getLogger(__name__)

# Upstream detectron2 after v0.6 gives each worker chunks of ``batch_size`` consecutive sampler
# positions (``shard_chunk_size``); v0.6 deals positions out one by one. Follow the installed one.
_SHARDS_IN_BATCH_CHUNKS = "shard_chunk_size" in inspect.signature(ToIterableDataset).parameters


def cpu_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch CPU generator states (never touches CUDA: safe in workers)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }


class _ShardedStream(torchdata.IterableDataset):
    """Mapped items of the sampler's stream, dealt out to data-loader workers like detectron2.

    Worker ``w`` of ``W`` maps its ``m``-th item from sampler position
    ``(m // c) * W * c + w * c + m % c`` (``c``: chunk size, 1 for v0.6), positions counted
    after ``skip``. ``fetch_offset`` re-labels workers after a resume: the worker that the
    data loader asks first plays the logical worker whose turn it is.
    """

    def __init__(
        self,
        dataset: MapDataset,
        sampler: torchdata.Sampler,
        items_per_fetch: int,
        chunk: int,
        worker_init_fn: Callable[[int], None],
    ):
        self.dataset = dataset
        self.sampler = sampler
        self.items_per_fetch = items_per_fetch
        self.chunk = chunk
        self.worker_init_fn = worker_init_fn
        self.skip = 0
        self.fetch_offset = 0
        self.worker_states: dict[int, dict[str, Any]] = {}

    def __iter__(self) -> Iterator[tuple[dict, dict]]:
        info = torchdata.get_worker_info()
        workers, physical = (1, 0) if info is None else (info.num_workers, info.id)
        logical = (self.fetch_offset + physical) % workers
        done = max(0, -(-(self.fetch_offset - logical) // workers))  # fetches already delivered
        m = done * self.items_per_fetch
        base_seed = None
        if info is not None:
            base_seed = info.seed - info.id
            state = self.worker_states.get(logical)
            if state is not None and "fresh_base_seed" in state:
                # The logical worker never delivered an item: give it the seed it had at start.
                torch.manual_seed(state["fresh_base_seed"] + logical)
                self.worker_init_fn(logical)
            elif state is not None:
                set_rng_state(state)
        chunk = self.chunk

        def position(m: int) -> int:
            if workers == 1:
                return self.skip + m
            return self.skip + (m // chunk) * workers * chunk + logical * chunk + m % chunk

        want = position(m)
        for pos, index in enumerate(self.sampler):
            if pos != want:
                continue
            pre = cpu_rng_state()
            item = self.dataset[index]
            tag = {"logical": logical, "index": int(index), "pre": pre}
            if info is not None:
                tag["post"] = cpu_rng_state()
                tag["base_seed"] = base_seed
            yield item, tag
            m += 1
            want = position(m)


class ResumableTrainLoader:
    """Training batches (lists of mapped dataset dicts, or ``collate_fn`` of them), resumable.

    Arguments are those of ``detectron2.data.build_detection_train_loader`` (a map-style
    dataset with a sampler); see :meth:`from_config`. Iterate it once: the loader object holds
    the stream position, so two simultaneous iterators would share it.

    Raises:
        ValueError: when the batch size is not divisible by the number of processes, or the
            dataset is an IterableDataset (its position cannot be restored).
    """

    def __init__(
        self,
        dataset: list | torchdata.Dataset,
        *,
        mapper: Callable[[dict], Any],
        sampler: torchdata.Sampler,
        total_batch_size: int,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
    ):
        world = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH {total_batch_size} must be a positive multiple of the "
                f"number of processes ({world})"
            )
        if isinstance(dataset, torchdata.IterableDataset) or sampler is None:
            raise ValueError(
                "ResumableTrainLoader needs a map-style dataset and a sampler; an IterableDataset "
                "has no position that could be saved"
            )
        if isinstance(dataset, list):
            dataset = DatasetFromList(dataset, copy=False)
        self.dataset = dataset
        self.batch_size = total_batch_size // world
        self.num_workers = int(num_workers)
        self.aspect_ratio_grouping = bool(aspect_ratio_grouping)
        self.collate_fn = collate_fn
        self._stream = _ShardedStream(
            MapDataset(dataset, mapper),
            sampler,
            items_per_fetch=1 if self.aspect_ratio_grouping else self.batch_size,
            chunk=self.batch_size if _SHARDS_IN_BATCH_CHUNKS else 1,
            worker_init_fn=worker_init_reset_seed,
        )
        self._fetched = 0
        self._buckets: list[list[tuple[dict, dict]]] = [[], []]
        self._worker_states: dict[int, dict[str, Any]] = {}
        self._base_seed: int | None = None
        self._inner: Iterator | None = None

    @classmethod
    def from_config(cls, cfg, mapper: Callable[[dict], Any] | None = None) -> ResumableTrainLoader:
        """The loader that ``build_detection_train_loader(cfg, mapper=mapper)`` describes: the
        same dataset dicts, mapper (``DatasetMapper(cfg, True)`` by default), sampler (built the
        same way, with the same random draws), batch size, grouping and workers."""
        return cls(**build_detection_train_loader.from_config(cfg, mapper=mapper))

    # ------------------------------------------------------------------ iteration
    def _start(self) -> None:
        """Create the underlying DataLoader iterator (this draws its base seed from torch)."""
        self._stream.fetch_offset = self._fetched
        self._stream.worker_states = dict(self._worker_states)
        if self.aspect_ratio_grouping:
            loader = torchdata.DataLoader(
                self._stream,
                num_workers=self.num_workers,
                collate_fn=operator.itemgetter(0),
                worker_init_fn=worker_init_reset_seed,
            )
        else:
            loader = torchdata.DataLoader(
                self._stream,
                batch_size=self.batch_size,
                drop_last=True,
                num_workers=self.num_workers,
                collate_fn=list,
                worker_init_fn=worker_init_reset_seed,
            )
        self._inner = iter(loader)

    def _batch(self, items: list[dict]) -> Any:
        return items if self.collate_fn is None else self.collate_fn(items)

    def __iter__(self) -> Iterator[Any]:
        if self._inner is None:
            self._start()
        while True:
            fetched = next(self._inner)
            self._fetched += 1
            entries = [fetched] if self.aspect_ratio_grouping else fetched
            tag = entries[-1][1]
            if "post" in tag:
                self._worker_states[tag["logical"]] = tag["post"]
                if self._base_seed is None:
                    self._base_seed = tag["base_seed"]
            if not self.aspect_ratio_grouping:
                yield self._batch([item for item, _ in entries])
                continue
            item, tag = fetched
            bucket = self._buckets[0 if item["width"] > item["height"] else 1]
            bucket.append((item, tag))
            if len(bucket) == self.batch_size:
                batch = [x for x, _ in bucket]
                del bucket[:]
                yield self._batch(batch)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands after the batches handed out so far (tensors, ints, lists)."""
        workers = []
        if self.num_workers > 0 and self._fetched > 0:
            for w in range(self.num_workers):
                state = self._worker_states.get(w)
                workers.append(state if state is not None else {"fresh_base_seed": self._base_seed})
        return {
            "fetched": self._fetched,
            "skip": self._stream.skip,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "aspect_ratio_grouping": self.aspect_ratio_grouping,
            "buffered": [
                [{"index": t["index"], "rng": t["pre"]} for _, t in b] for b in self._buckets
            ],
            "workers": workers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after the batches that ``state`` (from :meth:`state_dict`) had handed out.

        Call before iterating. Buffered items are mapped again here (this sets the random
        generators of this process; the trainer restores its own states afterwards), and the
        underlying iterator is created, so that no random draw happens later on its account.

        When the number of workers, the batch size or the grouping differ from the saved run,
        the stream continues after the items already used, but not bit for bit (a warning
        says so).
        """
        if self._inner is not None or self._fetched:
            raise RuntimeError("load_state_dict must be called before the loader is iterated")
        layout = (state["num_workers"], state["batch_size"], state["aspect_ratio_grouping"])
        if layout != (self.num_workers, self.batch_size, self.aspect_ratio_grouping):
            per_fetch = 1 if state["aspect_ratio_grouping"] else state["batch_size"]
            used = state["fetched"] * per_fetch - sum(len(b) for b in state["buffered"])
            self._stream.skip = state["skip"] + max(0, used)
            logger.warning(
                "the training data loader differs from the checkpoint's (workers, batch size per "
                "process, aspect-ratio grouping: %s now, %s saved): the data stream continues "
                "after about %d items, but not exactly as in an uninterrupted run",
                (self.num_workers, self.batch_size, self.aspect_ratio_grouping),
                layout,
                used,
            )
            return
        self._stream.skip = state["skip"]
        self._fetched = int(state["fetched"])
        for bucket, saved in zip(self._buckets, state["buffered"]):
            for entry in saved:
                set_rng_state(entry["rng"])
                item = self._stream.dataset[entry["index"]]
                bucket.append((item, {"index": entry["index"], "pre": entry["rng"]}))
        self._worker_states = dict(enumerate(state["workers"]))
        if self._fetched:
            self._start()
