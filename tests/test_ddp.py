"""DistillRCNN under DistributedDataParallel: 2 CPU processes (gloo)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from luminet_det.testing import write_teacher


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, teacher_files, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        _run(rank, world_size, teacher_files, out_dir)
    finally:
        dist.destroy_process_group()


def _run(rank, world_size, teacher_files, out_dir):
    from detectron2.engine import create_ddp_model
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    import luminet_det  # noqa: F401
    from luminet.losses import global_class_moments
    from luminet_det.testing import random_batch, tiny_distill_cfg

    # 1. global statistics: equal to those of the concatenated logits; the gradient of the
    # mean reaches every process's rows (the all-reduce is differentiable)
    all_logits = torch.randn(2 * 5 + 3, 4, generator=torch.Generator().manual_seed(0))
    chunks = [all_logits[:5], all_logits[5:]]
    local = chunks[rank].clone().requires_grad_(True)
    count, [(mean, var)] = global_class_moments(local)
    assert count.item() == len(all_logits)
    torch.testing.assert_close(mean[0].float(), all_logits.mean(0))
    torch.testing.assert_close(var[0].float(), all_logits.var(0, unbiased=False))
    mean.sum().backward()
    # d(sum of the mean over both processes' losses)/d local = 2 processes x 1/N
    torch.testing.assert_close(local.grad, torch.full_like(local, 2.0 / len(all_logits)))

    # 2. training steps with DDP, per-rank data, statistics over all processes
    cfg = tiny_distill_cfg(*teacher_files)
    cfg.MODEL.DISTILL.LUMINET.STATS = "global"
    torch.manual_seed(0)  # same init on both ranks (DDP also broadcasts it)
    model = build_model(cfg)
    model.train()
    ddp = create_ddp_model(model, broadcast_buffers=False, device_ids=None)
    assert ddp is not model
    opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.01)
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    for it in range(2):
        batch = random_batch(2, seed=100 * rank + it)  # different images per rank
        with EventStorage(it):
            losses = ddp(batch)
        assert torch.isfinite(losses["loss_luminet"]) and losses["loss_luminet"] > 0
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert not model.teacher.training
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k])
    # parameters only: BatchNorm running statistics are per process (broadcast_buffers=False,
    # as in detectron2's trainer)
    params = {k: v.detach() for k, v in model.named_parameters()}
    torch.save(params, os.path.join(out_dir, f"rank{rank}.pth"))


@pytest.mark.slow
def test_two_process_ddp_keeps_students_identical(tmp_path):
    teacher_files = write_teacher(str(tmp_path / "teacher"), seed=1)[:2]
    mp.spawn(_worker, args=(2, _free_port(), teacher_files, str(tmp_path)), nprocs=2, join=True)
    p0 = torch.load(tmp_path / "rank0.pth")
    p1 = torch.load(tmp_path / "rank1.pth")
    assert set(p0) == set(p1) and len(p0) > 50
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"student parameter {k} differs between ranks"
    # and training changed them (the test would pass trivially otherwise)
    torch.manual_seed(0)
    from detectron2.modeling import build_model

    from luminet_det.testing import tiny_distill_cfg

    init = dict(build_model(tiny_distill_cfg(*teacher_files)).named_parameters())
    changed = [k for k in p0 if not torch.equal(p0[k], init[k].detach())]
    assert len(changed) > len(p0) // 2
