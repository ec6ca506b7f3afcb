"""Tests of the loss core: golden values, properties, dtypes and bad inputs."""

import numpy as np
import pytest
import torch

from luminet.losses import (
    DKDLoss,
    KDLoss,
    LumiNetLoss,
    available_distill_losses,
    build_distill_loss,
    dkd_loss,
    get_distill_loss,
    kd_loss,
    luminet_loss,
    perception,
    register_distill_loss,
    unregister_distill_loss,
)


# Independent float64 references written from the formulas (not from our torch code).
def _np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_kl_batchmean(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)) / p.shape[0])


def _np_perception(z, eps=1e-5):
    return (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + eps)  # numpy var is biased


def _np_luminet(s, t, temperature, alpha):
    p_t = _np_softmax(_np_perception(t) / temperature)
    p_s = _np_softmax(_np_perception(s) / temperature)
    return alpha**2 * _np_kl_batchmean(p_t, p_s)


def _np_dkd(s, t, target, alpha, beta, temperature):
    n, c = s.shape
    p_s, p_t = _np_softmax(s / temperature), _np_softmax(t / temperature)
    idx = np.arange(n)
    b_s = np.stack([p_s[idx, target], 1 - p_s[idx, target]], 1)
    b_t = np.stack([p_t[idx, target], 1 - p_t[idx, target]], 1)
    mask = np.ones_like(s, dtype=bool)
    mask[idx, target] = False
    nt_s = _np_softmax(np.where(mask, s / temperature, -np.inf))
    nt_t = _np_softmax(np.where(mask, t / temperature, -np.inf))
    nt_s = np.where(mask, nt_s, 1.0)  # log(1) = 0 where the teacher has no mass
    tckd = _np_kl_batchmean(b_t, b_s)
    nckd = _np_kl_batchmean(nt_t, nt_s)
    return (alpha * tckd + beta * nckd) * temperature**2


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(16, 11, generator=g) * 3
    t = torch.randn(16, 11, generator=g) * 5 + 1
    y = torch.randint(0, 11, (16,), generator=g)
    return s, t, y


# --- golden values ---------------------------------------------------------------------------


def test_perception_matches_formula(logits):
    s, _, _ = logits
    np.testing.assert_allclose(perception(s).numpy(), _np_perception(s.double().numpy()), atol=1e-5)
    h = perception(s)
    torch.testing.assert_close(h.mean(0), torch.zeros(11), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(0, unbiased=False), torch.ones(11), atol=1e-4, rtol=0)


@pytest.mark.parametrize("temperature,alpha", [(1.0, 1.0), (4.0, 33.0), (8.0, 70.0), (0.7, 2.0)])
def test_luminet_matches_reference(logits, temperature, alpha):
    s, t, _ = logits
    ours = luminet_loss(s, t, temperature=temperature, alpha=alpha).item()
    ref = _np_luminet(s.double().numpy(), t.double().numpy(), temperature, alpha)
    assert ours == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_luminet_pinned_value(logits):
    # Pinned so a silent change of the definition fails ("losses have changed").
    s, t, _ = logits
    assert luminet_loss(s, t, temperature=4.0, alpha=1.0).item() == pytest.approx(
        _PINNED["luminet_T4"], rel=1e-5
    )


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_matches_reference(logits, temperature):
    s, t, _ = logits
    p_t = _np_softmax(t.double().numpy() / temperature)
    p_s = _np_softmax(s.double().numpy() / temperature)
    ref = _np_kl_batchmean(p_t, p_s) * temperature**2
    assert kd_loss(s, t, temperature).item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("alpha,beta,temperature", [(1.0, 8.0, 4.0), (1.0, 2.0, 1.0)])
def test_dkd_matches_reference(logits, alpha, beta, temperature):
    s, t, y = logits
    ref = _np_dkd(s.double().numpy(), t.double().numpy(), y.numpy(), alpha, beta, temperature)
    assert dkd_loss(s, t, y, alpha, beta, temperature).item() == pytest.approx(ref, rel=1e-5)


def test_dkd_tckd_plus_nckd_decomposes_kd(logits):
    # DKD paper, Eq. 5: KD = TCKD + (1 - p_t^target) * NCKD per sample; with alpha = beta = 1
    # and a teacher that is certain of the target... use the identity on one sample instead.
    s, t, y = logits
    s1, t1, y1 = s[:1], t[:1], y[:1]
    p_t = torch.softmax(t1 / 4.0, 1)[0, y1].item()
    full = kd_loss(s1, t1, 4.0).item()
    tckd = dkd_loss(s1, t1, y1, alpha=1.0, beta=0.0, temperature=4.0).item()
    nckd = dkd_loss(s1, t1, y1, alpha=0.0, beta=1.0, temperature=4.0).item()
    assert full == pytest.approx(tckd + (1 - p_t) * nckd, rel=1e-4)


def test_dkd_non_target_term_is_exact_when_the_target_leads_by_far():
    """The official code removes the target column by subtracting 1000 from it (in logit / T
    units), which leaks the target back when it leads by more than 1000 T; ours masks it out
    exactly: NCKD equals the KL of the softmaxes over the non-target columns alone."""
    t = torch.tensor([[2000.0, 1.0, 0.0, -1.0], [0.5, 3000.0, 0.0, 2.0]])
    s = torch.tensor([[0.0, 2.0, 0.0, -1.0], [1.0, 0.0, -2.0, 0.0]])
    y = torch.tensor([0, 1])
    nckd = dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=1.0)
    keep = ~torch.nn.functional.one_hot(y, 4).bool()
    s_nt, t_nt = s[keep].view(2, 3), t[keep].view(2, 3)
    expected = kd_loss(s_nt, t_nt, temperature=1.0)
    assert torch.isfinite(nckd) and nckd.item() == pytest.approx(expected.item(), rel=1e-6)


# --- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["luminet", "kd", "dkd"])
def test_zero_when_student_equals_teacher(logits, fn):
    _, t, y = logits
    loss = build_distill_loss(fn)(t.clone(), t, y)
    assert loss.item() == 0.0


def test_luminet_invariant_to_per_class_affine_maps(logits):
    s, t, _ = logits
    g = torch.Generator().manual_seed(1)
    scale = torch.rand(1, 11, generator=g) * 5 + 0.2
    shift = torch.randn(1, 11, generator=g) * 10
    base = luminet_loss(s, t, 4.0).item()
    # Either side may be transformed; eps makes the invariance approximate for tiny variances.
    assert luminet_loss(s * scale + shift, t, 4.0).item() == pytest.approx(base, rel=1e-4)
    assert luminet_loss(s, t * scale + shift, 4.0).item() == pytest.approx(base, rel=1e-4)
    # KD has no such invariance: the property is specific to perception.
    assert kd_loss(s, t * scale + shift, 4.0).item() != pytest.approx(kd_loss(s, t, 4.0).item())


@pytest.mark.parametrize("fn", ["luminet", "kd", "dkd"])
def test_gradient_reaches_only_the_student(logits, fn):
    s, t, y = logits
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    build_distill_loss(fn)(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_alpha_scales_quadratically(logits):
    s, t, _ = logits
    assert luminet_loss(s, t, alpha=3.0).item() == pytest.approx(
        9 * luminet_loss(s, t, alpha=1.0).item(), rel=1e-6
    )


def test_single_row_is_finite_and_zero():
    # With N = 1 every column is constant: perception maps it to zeros, both distributions are
    # uniform, and the loss is exactly 0 (documented behaviour).
    s, t = torch.randn(1, 5), torch.randn(1, 5)
    loss = luminet_loss(s, t, temperature=2.0)
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_constant_column_is_finite(logits):
    s, t, _ = logits
    s[:, 3] = 7.0
    t[:, 5] = -2.0
    assert torch.all(perception(s)[:, 3] == 0)
    s.requires_grad_(True)
    loss = luminet_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("fn", ["luminet", "kd", "dkd"])
def test_low_and_high_precision_inputs_compute_in_float32(logits, dtype, fn):
    s, t, y = logits
    loss_fn = build_distill_loss(fn)
    ref = loss_fn(s.to(dtype).float(), t.to(dtype).float(), y)
    out = loss_fn(s.to(dtype), t.to(dtype), y)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)


def test_modules_match_functions(logits):
    s, t, y = logits
    assert LumiNetLoss(4.0, 2.0)(s, t).item() == luminet_loss(s, t, 4.0, 2.0).item()
    assert KDLoss(2.0)(s, t).item() == kd_loss(s, t, 2.0).item()
    assert DKDLoss(1.0, 8.0, 4.0)(s, t, y).item() == dkd_loss(s, t, y, 1.0, 8.0, 4.0).item()


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [luminet_loss, kd_loss])
def test_shape_mismatch_names_both_shapes(fn):
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        fn(torch.randn(4, 5), torch.randn(4, 6))


@pytest.mark.parametrize("bad", [torch.randn(4), torch.randn(2, 3, 4)])
def test_non_2d_raises(bad):
    with pytest.raises(ValueError, match="2-D"):
        luminet_loss(bad, bad.clone())


def test_empty_batch_raises():
    with pytest.raises(ValueError, match=r"at least one row.*\(0, 5\)"):
        luminet_loss(torch.randn(0, 5), torch.randn(0, 5))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_non_finite_inputs_raise(logits, value, side):
    s, t, _ = logits
    (s if side == "student" else t)[2, 3] = value
    with pytest.raises(ValueError, match=f"{side} logits.*non-finite"):
        luminet_loss(s, t)


def test_bad_temperature_raises(logits):
    s, t, _ = logits
    with pytest.raises(ValueError, match="temperature"):
        luminet_loss(s, t, temperature=0.0)


def test_dkd_target_checks(logits):
    s, t, y = logits
    with pytest.raises(ValueError, match="target=None"):
        dkd_loss(s, t, None)
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        dkd_loss(s, t, y[:3])
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        dkd_loss(s, t, torch.full((16,), 11))


# --- registry --------------------------------------------------------------------------------


def test_registry_lists_builtins_and_none():
    assert {"luminet", "kd", "dkd", "none"} <= set(available_distill_losses())
    assert build_distill_loss("none") is None
    assert isinstance(build_distill_loss("LumiNet", temperature=2.0), LumiNetLoss)


def test_unknown_loss_lists_known_names():
    with pytest.raises(KeyError, match="unknown distillation loss 'nope'.*dkd.*kd.*luminet"):
        get_distill_loss("nope")


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(TypeError, match="does not take \\['beta'\\]"):
        build_distill_loss("luminet", beta=1.0)


def test_third_party_registration():
    @register_distill_loss("test_l2_logits")
    class L2Logits(torch.nn.Module):
        def __init__(self, scale=1.0):
            super().__init__()
            self.scale = scale

        def forward(self, logits_student, logits_teacher, target=None):
            return self.scale * (logits_student - logits_teacher.detach()).pow(2).mean()

    try:
        loss = build_distill_loss("test_l2_logits", scale=2.0)
        assert loss(torch.ones(2, 3), torch.zeros(2, 3)).item() == 2.0
        with pytest.raises(ValueError, match="already registered"):
            register_distill_loss("test_l2_logits", lambda: None)
        with pytest.raises(ValueError, match="already registered.*case-insensitive"):
            register_distill_loss("TEST_L2_Logits", lambda: None)
        assert get_distill_loss("Test_L2_Logits") is L2Logits
        with pytest.raises(ValueError, match="reserved"):
            register_distill_loss("none", L2Logits)
    finally:  # other tests dump configs with a section per registered loss
        assert unregister_distill_loss("test_l2_logits") is L2Logits
    assert "test_l2_logits" not in available_distill_losses()


_PINNED = {"luminet_T4": 0.052070777863264084}


def test_perception_with_given_statistics(logits):
    s, _, _ = logits
    mean = s.mean(0, keepdim=True)
    var = s.var(0, unbiased=False, keepdim=True)
    torch.testing.assert_close(perception(s, mean=mean, var=var), perception(s))
    shifted = perception(s, mean=mean + 1.0, var=var)
    torch.testing.assert_close(shifted, perception(s) - torch.rsqrt(var + 1e-5))
    with pytest.raises(ValueError, match="both mean and var"):
        perception(s, mean=mean)
    with pytest.raises(ValueError, match=r"shape \(1, 11\)"):
        perception(s, mean=mean[:, :3], var=var[:, :3])


# --- scale safety ----------------------------------------------------------------------------


def test_perception_of_ordinary_logits_is_the_plain_formula_bit_for_bit(logits):
    # The overflow-safe path must not move a single bit for ordinary logits (pinned runs).
    s, t, _ = logits
    for z in (s, t, torch.randn(512, 81) * 20):
        plain = (z - z.mean(0, keepdim=True)) * torch.rsqrt(
            z.var(0, unbiased=False, keepdim=True) + 1e-5
        )
        assert torch.equal(perception(z), plain)
    s = s.clone().requires_grad_(True)
    s_plain = s.detach().clone().requires_grad_(True)
    luminet_loss(s, t, temperature=2.0).backward()
    h_s = (s_plain - s_plain.mean(0, keepdim=True)) * torch.rsqrt(
        s_plain.var(0, unbiased=False, keepdim=True) + 1e-5
    )
    h_t = perception(t)
    log_s = torch.log_softmax(h_s / 2.0, 1)
    log_t = torch.log_softmax(h_t / 2.0, 1)
    torch.nn.functional.kl_div(log_s, log_t, reduction="batchmean", log_target=True).backward()
    assert torch.equal(s.grad, s_plain.grad)


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e37])
def test_huge_finite_logits_give_the_right_loss_and_gradient(logits, scale):
    # fp32 variance of logits >= 1e20 overflows; the plain formula then gave loss 0, gradient 0.
    s, t, _ = logits
    big_s = (s * scale).requires_grad_(True)
    loss = luminet_loss(big_s, t * scale, temperature=4.0)
    loss.backward()
    s64, t64 = s.double().numpy() * scale, t.double().numpy() * scale
    ref = _np_luminet(s64, t64, 4.0, 1.0)
    assert ref > 1e-3 and loss.item() == pytest.approx(ref, rel=1e-5)
    # perception is scale-invariant (eps is negligible at this scale): same loss and a gradient
    # that is the small-scale gradient divided by the scale.
    small = s.clone().requires_grad_(True)
    luminet_loss(small, t, temperature=4.0, eps=1e-30).backward()
    assert torch.isfinite(big_s.grad).all() and big_s.grad.abs().max() > 0
    torch.testing.assert_close(big_s.grad * scale, small.grad, rtol=1e-4, atol=1e-6)


def test_huge_and_ordinary_columns_together(logits):
    s, t, _ = logits
    mixed = s.clone()
    mixed[:, 2] *= 1e25
    h = perception(mixed)
    ref = _np_perception(mixed.double().numpy())
    np.testing.assert_allclose(h.numpy(), ref, atol=1e-5)
    assert torch.equal(h[:, [0, 1, 3]], perception(s)[:, [0, 1, 3]])  # other columns untouched
    # a constant huge column is constant: zeros, as for ordinary logits
    mixed[:, 4] = 3e38
    assert torch.all(perception(mixed)[:, 4] == 0)
