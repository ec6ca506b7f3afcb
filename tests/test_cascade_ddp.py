"""A Cascade R-CNN student under DistributedDataParallel with LumiNet statistics over all
processes (2 CPU processes, gloo): one all-reduce per stage, the same on every rank."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from luminet_det.testing import TINY_CASCADE_OPTS, write_teacher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world_size, port, teacher_files, out_dir):
    import torch.distributed as dist
    from detectron2.engine import create_ddp_model
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    import luminet_det  # noqa: F401
    from luminet_det.testing import random_batch, tiny_distill_cfg

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        cfg = tiny_distill_cfg(*teacher_files, **TINY_CASCADE_OPTS)
        cfg.MODEL.DISTILL.LUMINET.STATS = "global"
        cfg.MODEL.DISTILL.CASCADE_STAGE_WEIGHTS = [1.0, 2.0, 1.0]
        torch.manual_seed(0)
        model = build_model(cfg).train()
        ddp = create_ddp_model(model, broadcast_buffers=False, device_ids=None)
        opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.01)
        # rank 1 gets images without annotations in its second step: other ROI labels, the
        # same collective calls
        for it in range(2):
            n_boxes = 0 if (rank, it) == (1, 1) else 2
            batch = random_batch(2, seed=100 * rank + it, boxes_per_image=n_boxes)
            with EventStorage(it):
                losses = ddp(batch)
            assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        params = {k: v.detach() for k, v in model.named_parameters()}
        torch.save(params, os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_cascade_ddp_with_global_statistics_keeps_students_identical(tmp_path):
    teacher_files = write_teacher(str(tmp_path / "teacher"), seed=1, **TINY_CASCADE_OPTS)[:2]
    mp.spawn(worker, args=(2, free_port(), teacher_files, str(tmp_path)), nprocs=2, join=True)
    p0 = torch.load(tmp_path / "rank0.pth")
    p1 = torch.load(tmp_path / "rank1.pth")
    assert set(p0) == set(p1) and any("box_predictor.2." in k for k in p0)
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"student parameter {k} differs between ranks"
