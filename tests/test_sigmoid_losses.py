"""Tests of the sigmoid losses for dense heads (kd_sigmoid, luminet_sigmoid) and their options."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from luminet.losses import (
    DENSE_ANCHOR_CHOICES,
    DENSE_NORMALIZER_CHOICES,
    KDSigmoidLoss,
    LumiNetSigmoidLoss,
    available_distill_losses,
    binary_kl_with_logits,
    build_distill_loss,
    dense_anchor_weights,
    dense_normalizer,
    kd_sigmoid_loss,
    luminet_sigmoid_loss,
    perception,
    weighted_binary_kl,
    weighted_class_moments,
)

OPTIONS = list(itertools.product(DENSE_ANCHOR_CHOICES, DENSE_NORMALIZER_CHOICES))
LOSSES = {"kd_sigmoid": kd_sigmoid_loss, "luminet_sigmoid": luminet_sigmoid_loss}
K = 5  # sigmoid classes; label K is background, -1 ignored


# --- an independent reference, written out with Python floats and loops ------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _bernoulli_kl(t, s):
    """KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))), from log-probabilities."""
    p, not_p = _sigmoid(t), _sigmoid(-t)  # not 1 - p: that loses all digits for large t
    return p * (_log_sigmoid(t) - _log_sigmoid(s)) + not_p * (_log_sigmoid(-t) - _log_sigmoid(-s))


def _ref_weights(t, y, anchors):
    weights = []
    for i, row in enumerate(t):
        label = None if y is None else y[i]
        if label is None:
            selected = 1.0
        elif anchors == "foreground":
            selected = 1.0 if 0 <= label < K else 0.0
        else:
            selected = 1.0 if label >= 0 else 0.0
        if anchors == "teacher_weighted":
            selected *= max(_sigmoid(v) for v in row)
        weights.append(selected)
    return weights


def _ref_perceive(z, w, eps=1e-5):
    n, k = len(z), len(z[0])
    total = sum(w)
    out = [[0.0] * k for _ in range(n)]
    for j in range(k):
        mean = sum(w[i] * z[i][j] for i in range(n)) / total
        var = sum(w[i] * (z[i][j] - mean) ** 2 for i in range(n)) / total
        for i in range(n):
            out[i][j] = (z[i][j] - mean) / math.sqrt(var + eps)
    return out


def _ref_loss(s, t, y, anchors, normalizer, temperature, perceive=False, scale=1.0):
    s, t = s.double().tolist(), t.double().tolist()
    y = None if y is None else y.tolist()
    w = _ref_weights(t, y, anchors)
    if perceive:
        s, t = _ref_perceive(s, w), _ref_perceive(t, w)
    total = 0.0
    for i in range(len(s)):
        for j in range(len(s[0])):
            total += w[i] * _bernoulli_kl(t[i][j] / temperature, s[i][j] / temperature)
    if normalizer == "num_anchors":
        divisor = sum(w)
    else:
        divisor = max(sum(1 for v in y if 0 <= v < K), 1)
    return scale * total / divisor


@pytest.fixture
def dense():
    """24 anchors: a few foreground, most background, some ignored (like a dense head's labels)."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(24, K, generator=g) * 2 - 2
    t = torch.randn(24, K, generator=g) * 3 - 3
    y = torch.full((24,), K)
    y[[1, 4, 9, 15, 20]] = torch.tensor([0, 3, 3, 1, 4])
    y[[2, 11, 17]] = -1
    return s, t, y


# --- golden values -----------------------------------------------------------------------------


@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kd_sigmoid_matches_written_out_formula(dense, anchors, normalizer, temperature):
    s, t, y = dense
    ours = kd_sigmoid_loss(s, t, y, temperature, anchors=anchors, normalizer=normalizer)
    ref = _ref_loss(s, t, y, anchors, normalizer, temperature, scale=temperature**2)
    assert ours.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
@pytest.mark.parametrize("temperature,alpha", [(1.0, 1.0), (2.0, 3.0), (0.5, 1.0)])
def test_luminet_sigmoid_matches_written_out_formula(
    dense, anchors, normalizer, temperature, alpha
):
    s, t, y = dense
    ours = luminet_sigmoid_loss(s, t, y, temperature, alpha, anchors=anchors, normalizer=normalizer)
    ref = _ref_loss(s, t, y, anchors, normalizer, temperature, perceive=True, scale=alpha**2)
    assert ours.item() == pytest.approx(ref, rel=1e-5)


def test_without_target_every_anchor_counts(dense):
    s, t, _ = dense
    ref = _ref_loss(s, t, None, "all", "num_anchors", 1.0, perceive=True)
    assert luminet_sigmoid_loss(s, t).item() == pytest.approx(ref, rel=1e-5)
    ref = _ref_loss(s, t, None, "teacher_weighted", "num_anchors", 1.0)
    assert kd_sigmoid_loss(s, t, anchors="teacher_weighted").item() == pytest.approx(ref, rel=1e-5)
    # No target is the same as "nothing ignored".
    background = torch.full((24,), K)
    assert luminet_sigmoid_loss(s, t).item() == luminet_sigmoid_loss(s, t, background).item()


# Pinned (values of this implementation, which the golden tests above check against the
# written-out formula) so that a silent change of a definition fails ("losses have changed").
_PINNED = {
    ("kd_sigmoid", "all", "num_anchors"): 2.6435999870300293,
    ("kd_sigmoid", "teacher_weighted", "num_foreground"): 7.800636291503906,
    ("luminet_sigmoid", "all", "num_anchors"): 1.0913522243499756,
    ("luminet_sigmoid", "foreground", "num_foreground"): 1.0668487548828125,
    ("luminet_sigmoid", "teacher_weighted", "num_foreground"): 2.7266852855682373,
}


@pytest.mark.parametrize("key", list(_PINNED))
def test_pinned_values(dense, key):
    s, t, y = dense
    name, anchors, normalizer = key
    value = LOSSES[name](s, t, y, anchors=anchors, normalizer=normalizer).item()
    assert value == pytest.approx(_PINNED[key], rel=1e-6)


@pytest.mark.parametrize(
    "t,s", [(0.3, -1.2), (30.0, 31.0), (-30.0, -31.0), (80.0, -80.0), (-60.0, 5.0), (100.0, 100.0)]
)
def test_binary_kl_is_accurate_for_large_logits(t, s):
    # log(sigmoid(x)) would underflow to -inf or lose all digits here; logsigmoid does not.
    ours = binary_kl_with_logits(torch.tensor([s]), torch.tensor([t])).item()
    assert ours == pytest.approx(_bernoulli_kl(t, s), rel=1e-4, abs=1e-30)
    assert ours >= 0.0


def test_kd_sigmoid_is_bce_minus_teacher_entropy(dense):
    # KL(p || q) = CE(p, q) - H(p) per class: KD on sigmoids reduces to BCE with soft targets.
    s, t, _ = dense
    p = torch.sigmoid(t)
    bce = F.binary_cross_entropy_with_logits(s, p, reduction="none").sum(1)
    entropy = F.binary_cross_entropy_with_logits(t, p, reduction="none").sum(1)
    assert kd_sigmoid_loss(s, t).item() == pytest.approx((bce - entropy).mean().item(), rel=1e-5)


@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
def test_kd_sigmoid_gradient_is_probability_difference(dense, anchors, normalizer):
    # d/ds_ij = T**2 * a_i * (sigmoid(s_ij / T) - sigmoid(t_ij / T)) / T / normalizer
    s, t, y = dense
    temperature = 2.0
    s = s.clone().requires_grad_(True)
    kd_sigmoid_loss(s, t, y, temperature, anchors=anchors, normalizer=normalizer).backward()
    w = dense_anchor_weights(t, y, anchors)
    divisor = dense_normalizer(w, y, K, normalizer)
    diff = torch.sigmoid(s.detach() / temperature) - torch.sigmoid(t / temperature)
    expected = temperature * w[:, None] * diff / divisor
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-7)


# --- options -----------------------------------------------------------------------------------


def test_anchor_weights_and_normalizers(dense):
    _, t, y = dense
    valid = (y >= 0).float()
    foreground = ((y >= 0) & (y < K)).float()
    torch.testing.assert_close(dense_anchor_weights(t, y, "all"), valid)
    torch.testing.assert_close(dense_anchor_weights(t, y, "foreground"), foreground)
    teacher = dense_anchor_weights(t, y, "teacher_weighted")
    torch.testing.assert_close(teacher, valid * torch.sigmoid(t).max(1).values)
    assert dense_normalizer(teacher, y, K, "num_anchors").item() == pytest.approx(
        teacher.sum().item()
    )
    assert dense_normalizer(teacher, y, K, "num_foreground").item() == 5.0
    assert dense_normalizer(valid, torch.full((24,), K), K, "num_foreground").item() == 1.0
    assert dense_anchor_weights(t, None, "all").tolist() == [1.0] * 24


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
def test_ignored_anchors_do_not_matter(dense, name, anchors, normalizer):
    s, t, y = dense
    base = LOSSES[name](s, t, y, anchors=anchors, normalizer=normalizer).item()
    s2, t2 = s.clone(), t.clone()
    s2[y == -1] = 50.0
    t2[y == -1] = -20.0
    assert LOSSES[name](s2, t2, y, anchors=anchors, normalizer=normalizer).item() == base


@pytest.mark.parametrize("name", list(LOSSES))
def test_foreground_option_ignores_background(dense, name):
    s, t, y = dense
    base = LOSSES[name](s, t, y, anchors="foreground").item()
    s2, t2 = s.clone(), t.clone()
    s2[y == K] = torch.randn(int((y == K).sum()), K) * 9
    t2[y == K] = 4.0
    assert LOSSES[name](s2, t2, y, anchors="foreground").item() == base
    assert LOSSES[name](s2, t2, y, anchors="all").item() != LOSSES[name](s, t, y).item()


@pytest.mark.parametrize("name", list(LOSSES))
def test_teacher_weighting_follows_teacher_confidence(dense, name):
    s, t, y = dense
    t = t.clone()
    quiet, loud = 0, 3  # two background anchors
    t[quiet] = -30.0  # the teacher sees nothing there: weight ~1e-13
    s_changed = s.clone()
    s_changed[quiet] = 7.0
    opts = {"anchors": "teacher_weighted", "normalizer": "num_foreground"}
    base = LOSSES[name](s, t, y, **opts).item()
    assert LOSSES[name](s_changed, t, y, **opts).item() == pytest.approx(base, rel=1e-4)
    s_changed = s.clone()
    s_changed[loud] = 7.0
    assert LOSSES[name](s_changed, t, y, **opts).item() != pytest.approx(base, rel=1e-2)


@pytest.mark.parametrize("name", list(LOSSES))
def test_foreground_normalizer_is_sum_over_num_fg(dense, name):
    s, t, y = dense
    mean = LOSSES[name](s, t, y, anchors="foreground", normalizer="num_anchors").item()
    per_fg = LOSSES[name](s, t, y, anchors="foreground", normalizer="num_foreground").item()
    assert per_fg == pytest.approx(mean, rel=1e-6)  # 5 foreground anchors, weight 1 each
    mean = LOSSES[name](s, t, y, anchors="all", normalizer="num_anchors").item()
    per_fg = LOSSES[name](s, t, y, anchors="all", normalizer="num_foreground").item()
    assert per_fg == pytest.approx(mean * 21 / 5, rel=1e-6)  # 21 anchors not ignored, 5 fg


# --- properties --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
def test_zero_when_student_equals_teacher(dense, name, anchors, normalizer):
    _, t, y = dense
    loss = build_distill_loss(name, anchors=anchors, normalizer=normalizer)(t.clone(), t, y)
    assert loss.item() == 0.0


@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
def test_luminet_sigmoid_invariant_to_student_per_class_affine_maps(dense, anchors, normalizer):
    s, t, y = dense
    scale = torch.rand(1, K) * 5 + 0.2
    shift = torch.randn(1, K) * 10
    opts = {"anchors": anchors, "normalizer": normalizer}
    base = luminet_sigmoid_loss(s, t, y, **opts).item()
    assert luminet_sigmoid_loss(s * scale + shift, t, y, **opts).item() == pytest.approx(
        base, rel=1e-4
    )
    assert luminet_sigmoid_loss(t * scale + shift, t, y, **opts).item() < 1e-6
    assert kd_sigmoid_loss(s * scale + shift, t, y, **opts).item() != pytest.approx(
        kd_sigmoid_loss(s, t, y, **opts).item(), rel=1e-2
    )


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
def test_gradient_reaches_only_the_student(dense, name, anchors, normalizer):
    s, t, y = dense
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    build_distill_loss(name, anchors=anchors, normalizer=normalizer)(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and torch.isfinite(s.grad).all()
    assert t.grad is None


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("anchors", DENSE_ANCHOR_CHOICES)
def test_single_anchor_is_finite(name, anchors):
    s, t = torch.randn(1, K), torch.randn(1, K)
    s.requires_grad_(True)
    loss = LOSSES[name](s, t, torch.tensor([2]), anchors=anchors)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    if name == "luminet_sigmoid":  # every column constant: perceived as 0 on both sides
        assert loss.item() == 0.0


def test_one_weighted_anchor_among_many_gives_zero_luminet(dense):
    s, t, _ = dense
    y = torch.full((24,), K)
    y[6] = 2
    assert luminet_sigmoid_loss(s, t, y, anchors="foreground").item() == 0.0


def test_constant_column_is_perceived_as_exact_zero(dense):
    s, t, y = dense
    s[:, 3] = 0.1  # 0.1 has no exact binary form: a plain weighted mean would round
    for anchors in DENSE_ANCHOR_CHOICES:
        w = dense_anchor_weights(t, y, anchors)
        mean, var = weighted_class_moments(s, w)
        assert mean[0, 3].item() == s[0, 3].item() and var[0, 3].item() == 0.0
        assert torch.all(perception(s, 1e-5, mean, var)[:, 3] == 0)
    s.requires_grad_(True)
    loss = luminet_sigmoid_loss(s, t, y, anchors="teacher_weighted")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("labels", [K, -1])
def test_no_selected_anchor_gives_zero_loss_and_zero_gradient(dense, name, labels):
    # An image without objects, with anchors="foreground", or with every anchor ignored.
    s, t, _ = dense
    y = torch.full((24,), labels)
    anchors = "foreground" if labels == K else "all"
    for normalizer in DENSE_NORMALIZER_CHOICES:
        s_ = s.clone().requires_grad_(True)
        loss = LOSSES[name](s_, t, y, anchors=anchors, normalizer=normalizer)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.all(s_.grad == 0)  # connected to the graph (no DDP unused-parameter error)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", list(LOSSES))
def test_low_and_high_precision_inputs_compute_in_float32(dense, dtype, name):
    s, t, y = dense
    loss_fn = build_distill_loss(name, anchors="teacher_weighted")
    ref = loss_fn(s.to(dtype).float(), t.to(dtype).float(), y)
    out = loss_fn(s.to(dtype), t.to(dtype), y)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)


def test_modules_match_functions(dense):
    s, t, y = dense
    opts = {"anchors": "foreground", "normalizer": "num_foreground"}
    module = LumiNetSigmoidLoss(2.0, 3.0, 1e-3, **opts)
    assert module(s, t, y).item() == luminet_sigmoid_loss(s, t, y, 2.0, 3.0, 1e-3, **opts).item()
    assert "anchors='foreground'" in repr(module)
    module = KDSigmoidLoss(2.0, **opts)
    assert module(s, t, y).item() == kd_sigmoid_loss(s, t, y, 2.0, **opts).item()
    assert "normalizer='num_foreground'" in repr(module)


def _perceived(z, w):
    return perception(z, 1e-5, *weighted_class_moments(z, w))


@pytest.mark.parametrize("anchors,normalizer", OPTIONS)
def test_gradcheck_float64(anchors, normalizer):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 3, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, -1, 2, 3, 3])
    w = dense_anchor_weights(t, y, anchors)
    divisor = dense_normalizer(w, y, 3, normalizer)
    assert w.dtype == divisor.dtype == torch.float64
    h_t = _perceived(t, w)
    assert torch.autograd.gradcheck(lambda x: weighted_binary_kl(x, t, w, divisor, 2.0), (s,))
    assert torch.autograd.gradcheck(
        lambda x: weighted_binary_kl(_perceived(x, w), h_t, w, divisor, 2.0), (s,)
    )
    # The float32 losses are these float64 compositions, up to float32 rounding.
    opts = {"anchors": anchors, "normalizer": normalizer}
    expected = weighted_binary_kl(_perceived(s, w), h_t, w, divisor, 2.0).item()
    loss = luminet_sigmoid_loss(s, t, y, 2.0, **opts).item()
    assert loss == pytest.approx(expected, rel=1e-5, abs=1e-6)  # near 0 for "foreground" here
    expected = 4.0 * weighted_binary_kl(s, t, w, divisor, 2.0).item()
    assert kd_sigmoid_loss(s, t, y, 2.0, **opts).item() == pytest.approx(expected, rel=1e-5)


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", list(LOSSES.values()))
def test_shape_mismatch_names_both_shapes(fn):
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        fn(torch.randn(4, 5), torch.randn(4, 6))


@pytest.mark.parametrize("fn", list(LOSSES.values()))
@pytest.mark.parametrize("bad", [torch.randn(4), torch.randn(2, 3, 4)])
def test_non_2d_raises(fn, bad):
    with pytest.raises(ValueError, match="2-D"):
        fn(bad, bad.clone())


@pytest.mark.parametrize("fn", list(LOSSES.values()))
def test_no_anchor_raises(fn):
    with pytest.raises(ValueError, match=r"at least one row.*\(0, 5\)"):
        fn(torch.randn(0, 5), torch.randn(0, 5), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("fn", list(LOSSES.values()))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_non_finite_logits_raise(dense, fn, value, side):
    s, t, y = dense
    (s if side == "student" else t)[2, 3] = value
    with pytest.raises(ValueError, match=f"{side} logits.*non-finite"):
        fn(s, t, y)


@pytest.mark.parametrize("fn", list(LOSSES.values()))
def test_non_tensor_logits_raise(fn):
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([[0.0]], torch.zeros(1, 1))


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"temperature": float("nan")}, "temperature must be > 0"),
        ({"anchors": "background"}, "anchors must be one of"),
        ({"anchors": "ALL"}, "anchors must be one of"),
        ({"normalizer": "mean"}, "normalizer must be one of"),
    ],
)
def test_bad_hyperparameters_raise(dense, name, kwargs, match):
    s, t, y = dense
    with pytest.raises(ValueError, match=match):
        LOSSES[name](s, t, y, **kwargs)
    with pytest.raises(ValueError, match=match):
        build_distill_loss(name, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": 0.0}, "eps must be > 0"),
        ({"eps": -1e-5}, "eps must be > 0"),
        ({"alpha": float("nan")}, "alpha must be a finite number"),
        ({"alpha": float("inf")}, "alpha must be a finite number"),
    ],
)
def test_bad_luminet_hyperparameters_raise(dense, kwargs, match):
    s, t, y = dense
    with pytest.raises(ValueError, match=match):
        luminet_sigmoid_loss(s, t, y, **kwargs)
    with pytest.raises(ValueError, match=match):
        LumiNetSigmoidLoss(**kwargs)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize(
    "opts,match",
    [
        ({"anchors": "foreground"}, "anchors='foreground' needs the per-anchor labels"),
        ({"normalizer": "num_foreground"}, "normalizer='num_foreground' needs the per-anchor"),
    ],
)
def test_missing_target_raises_naming_the_option(dense, name, opts, match):
    s, t, _ = dense
    with pytest.raises(ValueError, match=match):
        LOSSES[name](s, t, None, **opts)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize(
    "target,match",
    [
        (torch.zeros(23, dtype=torch.long), r"shape \(24,\).*torch.int64 of shape \(23,\)"),
        (torch.zeros(24, 1, dtype=torch.long), r"shape \(24,\).*of shape \(24, 1\)"),
        (torch.zeros(24), r"integer tensor.*torch.float32"),
        (torch.zeros(24, dtype=torch.bool), r"integer tensor.*torch.bool"),
        ([0] * 24, "torch.Tensor or None; got list"),
        (torch.full((24,), -2), r"\[-1, 5\].*min -2"),
        (torch.full((24,), K + 1), r"\[-1, 5\].*max 6"),
        (torch.zeros(24, dtype=torch.long, device="meta"), "target is on meta"),
    ],
)
def test_bad_target_raises(dense, name, target, match):
    s, t, _ = dense
    with pytest.raises(ValueError, match=match):
        LOSSES[name](s, t, target)


def test_int32_target_is_accepted(dense):
    s, t, y = dense
    assert luminet_sigmoid_loss(s, t, y.int()).item() == luminet_sigmoid_loss(s, t, y).item()


# --- registry ----------------------------------------------------------------------------------


def test_registry_round_trip(dense):
    s, t, y = dense
    assert {"kd_sigmoid", "luminet_sigmoid"} <= set(available_distill_losses())
    opts = {"anchors": "teacher_weighted", "normalizer": "num_foreground"}
    loss = build_distill_loss("luminet_sigmoid", temperature=2.0, alpha=1.5, eps=1e-4, **opts)
    assert isinstance(loss, LumiNetSigmoidLoss)
    assert (loss.temperature, loss.alpha, loss.eps) == (2.0, 1.5, 1e-4)
    assert (loss.anchors, loss.normalizer) == ("teacher_weighted", "num_foreground")
    expected = luminet_sigmoid_loss(s, t, y, 2.0, 1.5, 1e-4, **opts).item()
    assert loss(s, t, target=y).item() == expected
    loss = build_distill_loss("KD_Sigmoid", temperature=3.0, **opts)
    assert isinstance(loss, KDSigmoidLoss)
    assert loss(s, t, y).item() == kd_sigmoid_loss(s, t, y, 3.0, **opts).item()


def test_registry_refuses_unknown_hyperparameters():
    with pytest.raises(TypeError, match=r"does not take \['beta'\]"):
        build_distill_loss("luminet_sigmoid", beta=1.0)
    with pytest.raises(TypeError, match=r"does not take \['alpha'\]"):
        build_distill_loss("kd_sigmoid", alpha=1.0)
