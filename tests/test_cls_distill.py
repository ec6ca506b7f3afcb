"""Distillers on the digits data: losses fall, the teacher stays frozen, errors are clear."""

import pytest
import torch

from luminet.config import load_config
from luminet.data import build_datasets
from luminet.distillers import Distiller, TeacherEnsemble, build_distiller, warmup_factor
from luminet.models import build_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _teacher_ckpt(tmp_path, name="resnet8", seed=1):
    torch.manual_seed(seed)
    model = build_model(name, 10, in_channels=1)
    path = tmp_path / f"{name}_{seed}.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def _cfg(kind, teachers=(), weights=(), extra=()):
    opts = ["DATASET.TYPE", "digits", "DATASET.IMAGE_SIZE", "8", "DISTILLER.TYPE", kind,
            "DISTILLER.STUDENT", "resnet8", "LUMINET.ALPHA", "4.0", "LUMINET.WARMUP", "0",
            "DKD.WARMUP", "0"]  # fmt: skip
    if teachers:
        opts += [
            "DISTILLER.TEACHERS",
            str(list(teachers)),
            "DISTILLER.TEACHER_WEIGHTS",
            str(list(weights)),
        ]
    return load_config(None, [*opts, *extra])


@pytest.fixture(scope="module")
def batch():
    cfg = load_config(None, ["DATASET.TYPE", "digits", "DATASET.IMAGE_SIZE", "8"])
    train = build_datasets(cfg).train
    x = torch.stack([train[i][0] for i in range(64)])
    y = torch.tensor([train[i][1] for i in range(64)])
    return x, y


@pytest.mark.parametrize("kind", ["none", "kd", "dkd", "luminet"])
def test_few_steps_decrease_the_loss(kind, batch, tmp_path):
    x, y = batch
    teachers = ["resnet8"] if kind != "none" else []
    weights = [_teacher_ckpt(tmp_path)] if kind != "none" else []
    distiller = build_distiller(_cfg(kind, teachers, weights), 10, in_channels=1)
    opt = torch.optim.SGD(distiller.student.parameters(), lr=0.05, momentum=0.9)
    distiller.train()
    totals = []
    for _ in range(12):
        _, losses = distiller(x, y, epoch=1)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(float(loss))
    assert set(losses) == ({"loss_ce"} if kind == "none" else {"loss_ce", "loss_distill"})
    assert totals[-1] < 0.85 * totals[0], totals
    assert sum(totals[-3:]) < 0.85 * sum(totals[:3]), totals


def test_teacher_gets_no_gradient_and_stays_in_eval(batch, tmp_path):
    x, y = batch
    cfg = _cfg(
        "luminet",
        ["resnet8", "resnet8"],
        [_teacher_ckpt(tmp_path, seed=1), _teacher_ckpt(tmp_path, seed=2)],
    )
    distiller = build_distiller(cfg, 10, in_channels=1)
    before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    opt = torch.optim.SGD(distiller.parameters(), lr=0.1)  # even if handed to the optimizer
    distiller.train()
    assert not distiller.teacher.training and all(
        not m.training for m in distiller.teacher.modules()
    )
    for _ in range(2):
        _, losses = distiller(x, y, epoch=3)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert all(p.grad is None and not p.requires_grad for p in distiller.teacher.parameters())
    assert any(p.grad is not None for p in distiller.student.parameters())
    after = distiller.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included


def test_ensemble_averages_member_logits(batch):
    x, _ = batch
    torch.manual_seed(0)
    members = [build_model("resnet8", 10, in_channels=1) for _ in range(3)]
    ens = TeacherEnsemble(members)
    with torch.no_grad():
        expected = torch.stack([m.eval()(x) for m in members]).mean(0)
    torch.testing.assert_close(ens(x), expected)


def test_ensemble_weights_load_in_order(tmp_path):
    paths = [_teacher_ckpt(tmp_path, seed=1), _teacher_ckpt(tmp_path, seed=2)]
    distiller = build_distiller(_cfg("kd", ["resnet8", "resnet8"], paths), 10, in_channels=1)
    for member, path in zip(distiller.teacher.members, paths):
        ref = torch.load(path)["model"]
        assert all(torch.equal(v, ref[k]) for k, v in member.state_dict().items())


def test_wrong_architecture_checkpoint_is_a_clear_error(tmp_path):
    path = _teacher_ckpt(tmp_path, name="resnet20")
    with pytest.raises(ValueError, match="does not fit architecture 'resnet8'"):
        build_distiller(_cfg("kd", ["resnet8"], [path]), 10, in_channels=1)


@pytest.mark.parametrize(
    "epoch, warmup, expected",
    [(1, 20, 0.05), (10, 20, 0.5), (30, 20, 1.0), (1, 0, 1.0), (1, 1, 1.0)],
)
def test_warmup_factor(epoch, warmup, expected):
    assert warmup_factor(epoch, warmup) == pytest.approx(expected)


def test_warmup_scales_the_distillation_term(batch, tmp_path):
    x, y = batch
    distiller = build_distiller(
        _cfg("dkd", ["resnet8"], [_teacher_ckpt(tmp_path)], ["DKD.WARMUP", "20"]), 10, in_channels=1
    )
    distiller.eval()  # BN in eval mode: both passes see the same logits
    with torch.no_grad():
        _, early = distiller(x, y, epoch=5)
        _, late = distiller(x, y, epoch=40)
    torch.testing.assert_close(early["loss_distill"] * 4, late["loss_distill"])
    torch.testing.assert_close(early["loss_ce"], late["loss_ce"])


def test_distiller_needs_teacher_and_loss_together():
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(build_model("resnet8", 10), None, torch.nn.Identity())
