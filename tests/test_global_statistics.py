"""LumiNet with statistics over all processes: exact loss and gradient (2 gloo processes), and
zero-row steps."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from luminet.losses import GlobalLumiNetLoss, build_luminet_loss, luminet_loss, perception

TEMPERATURE = 2.0
ROWS = {"unequal": (5, 8), "one_empty": (0, 13), "all_empty": (0, 0)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _logits(total: int, classes: int = 11):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(total, classes, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(total, classes, generator=g, dtype=torch.float64) * 2 + 1
    return student.float(), teacher.float()


def _worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        loss_fn = GlobalLumiNetLoss(temperature=TEMPERATURE)
        for case, rows in ROWS.items():
            student, teacher = _logits(sum(rows))
            start = sum(rows[:rank])
            s = student[start : start + rows[rank]].clone().requires_grad_(True)
            t = teacher[start : start + rows[rank]]
            loss = loss_fn(s, t)
            loss.backward()
            torch.save(
                {"loss": loss.detach(), "grad": s.grad}, os.path.join(out_dir, f"{case}{rank}")
            )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("global")
    try:
        mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    except mp.ProcessExitedException:
        # Once in a clean-clone CI run a gloo worker was killed by SIGABRT while the same code
        # passed before and on rerun; start both processes once more on a fresh port. A real
        # fault in the code fails again here (the results are still compared below).
        mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return {case: [torch.load(out / f"{case}{r}") for r in range(2)] for case in ROWS}


def _constant_statistics_gradient(student, teacher, rows, rank):
    """What treating the other process's statistics as constants gives (the old gradient)."""
    start = sum(rows[:rank])
    mine = slice(start, start + rows[rank])
    s = student.double().clone().requires_grad_(True)
    others = torch.ones(len(s), 1, dtype=s.dtype)
    others[mine] = 0.0
    s_mixed = s * (1 - others) + s.detach() * others  # gradient only through this rank's rows
    mean = s_mixed.mean(0, keepdim=True)
    var = (s_mixed * s_mixed).mean(0, keepdim=True) - mean * mean
    h_s = perception(s_mixed, mean=mean, var=var)[mine]
    h_t = perception(teacher.double())[mine]
    log_p_s = (h_s / TEMPERATURE).log_softmax(1)
    log_p_t = (h_t / TEMPERATURE).log_softmax(1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum() * 2 / len(s)
    kl.backward()
    return s.grad[mine].float() / 2


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unequal", "one_empty"])
def test_two_processes_equal_one_process_on_the_concatenated_batch(two_process_results, case):
    rows = ROWS[case]
    results = two_process_results[case]
    student, teacher = _logits(sum(rows))
    s = student.clone().requires_grad_(True)
    single = luminet_loss(s, teacher, temperature=TEMPERATURE)
    single.backward()
    # DDP optimises the mean of the processes' losses: same value, same gradient.
    mean_loss = sum(r["loss"] for r in results) / 2
    torch.testing.assert_close(mean_loss, single.detach(), rtol=0, atol=1e-6)
    grads = torch.cat([r["grad"] for r in results]) / 2
    torch.testing.assert_close(grads, s.grad, rtol=0, atol=1e-6)
    assert s.grad.abs().max() > 1e-3
    if case == "unequal":
        # The test can fail: statistics of the other process taken as constants (no gradient
        # through the all-reduce) give another gradient.
        approx = torch.cat(
            [_constant_statistics_gradient(student, teacher, rows, r) for r in (0, 1)]
        )
        cosine = torch.nn.functional.cosine_similarity(approx.flatten(), s.grad.flatten(), dim=0)
        print(f"cosine of the constant-statistics gradient to the exact one: {float(cosine):.4f}")
        assert cosine < 0.999, float(cosine)


@pytest.mark.slow
def test_a_step_without_rows_on_any_process_is_a_zero_loss(two_process_results):
    for r in two_process_results["all_empty"]:
        assert r["loss"].item() == 0.0
        assert r["grad"].shape == (0, 11)


def test_one_process_equals_batch_statistics_and_empty_is_zero():
    student, teacher = _logits(16)
    s = student.clone().requires_grad_(True)
    value = build_luminet_loss(temperature=TEMPERATURE, stats="global")(s, teacher)
    torch.testing.assert_close(
        value, luminet_loss(student, teacher, TEMPERATURE), rtol=1e-6, atol=1e-7
    )
    empty = torch.zeros(0, 11, requires_grad=True)
    zero = GlobalLumiNetLoss()(empty, torch.zeros(0, 11))
    assert zero.item() == 0.0
    zero.backward()
    with pytest.raises(ValueError, match="same shape"):
        GlobalLumiNetLoss()(torch.zeros(0, 11), torch.zeros(0, 10))
