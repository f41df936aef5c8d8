"""Losses: symmetric InfoNCE, concept correlation loss, DiCoSA / MAC-VR totals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.losses import (LossConfig, LossParams, concept_correlation, concept_loss, correlation_loss, info_nce,
                             multi_positive_info_nce, standardise, training_loss)
from pipeline.model import ModelOutput

CFG = LossConfig(alpha=0.01, beta=0.005, max_words=32, alpha_align=1.0)


def loop_info_nce(s: np.ndarray, scale: float) -> float:
    b = s.shape[0]
    t2v = v2t = 0.0
    for i in range(b):
        row = [scale * s[i, j] for j in range(b)]
        col = [scale * s[j, i] for j in range(b)]
        t2v += -(row[i] - max(row) - math.log(sum(math.exp(x - max(row)) for x in row)))
        v2t += -(col[i] - max(col) - math.log(sum(math.exp(x - max(col)) for x in col)))
    return (t2v / b + v2t / b) / 2


def loop_correlation(x: np.ndarray, y: np.ndarray, max_words: int) -> np.ndarray:
    b, k, d = x.shape
    c = np.zeros((k, k))
    for bi in range(b):
        for kk in range(k):
            for ll in range(k):
                zx = (x[bi, kk] - x[bi, kk].mean()) / x[bi, kk].std(ddof=1)
                zy = (y[bi, ll] - y[bi, ll].mean()) / y[bi, ll].std(ddof=1)
                c[kk, ll] += sum(zx[ch] * zy[ch] for ch in range(d))
    return c / b / max_words


def loop_corr_loss(c: np.ndarray, alpha: float, beta: float) -> float:
    k = c.shape[0]
    return (alpha * sum((c[i, i] - 1) ** 2 for i in range(k))
            + beta * sum(c[i, j] ** 2 for i in range(k) for j in range(k) if i != j))


def test_info_nce_matches_a_loop_and_does_not_clamp_the_scale():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 6, generator=g, dtype=torch.float64) * 0.2
    out = info_nce(s, torch.tensor(math.log(30.0), dtype=torch.float64))
    assert out["total"].item() == pytest.approx(loop_info_nce(s.numpy(), 30.0), rel=1e-12)
    assert out["total"].item() == pytest.approx((out["t2v"] + out["v2t"]).item() / 2)
    # No clamp inside the loss (the trainer clamps the parameter after each step): exp(10) is used
    # as it is, and the scale still gets a gradient above ln 100.
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    unclamped = info_nce(s, scale)
    assert unclamped["total"].item() == pytest.approx(loop_info_nce(s.numpy(), math.exp(10.0)), rel=1e-12)
    assert unclamped["total"].item() != pytest.approx(loop_info_nce(s.numpy(), 100.0), rel=1e-6)
    unclamped["total"].backward()
    assert scale.grad is not None and scale.grad != 0


def test_multi_positive_info_nce_generalises_info_nce():
    """One caption per video: the diagonal InfoNCE; several: every caption of a video is a positive."""
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 5, generator=g, dtype=torch.float64)
    scale = torch.tensor(math.log(20.0), dtype=torch.float64)
    one = multi_positive_info_nce(scale.exp() * s, torch.arange(5))
    ref = info_nce(s, scale)
    for key in ("total", "t2v", "v2t"):
        assert one[key].item() == pytest.approx(ref[key].item(), rel=1e-12)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64)
    owner = torch.tensor([0, 1, 1, 2, 2, 2])
    got = multi_positive_info_nce(logits, owner)
    p = torch.softmax(logits.T, dim=1)  # each video's distribution over the captions
    v2t = -torch.stack([torch.log(p[v, owner == v].sum()) for v in range(3)]).mean()
    assert got["v2t"].item() == pytest.approx(v2t.item(), rel=1e-12)
    assert got["t2v"].item() == pytest.approx(torch.nn.functional.cross_entropy(logits, owner).item(), rel=1e-12)


def test_info_nce_closed_forms():
    b = 7
    scale = torch.tensor(math.log(100.0))
    assert info_nce(torch.eye(b) * 10.0, scale)["total"].item() < 1e-30  # huge diagonal margin -> 0
    assert info_nce(torch.full((b, b), 0.3), scale)["total"].item() == pytest.approx(math.log(b), rel=1e-6)
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.zeros(3, 4), scale)


def test_info_nce_gradient_reaches_the_logit_scale():
    scale = torch.tensor(math.log(20.0), requires_grad=True)
    info_nce(torch.randn(4, 4), scale)["total"].backward()
    assert scale.grad is not None and scale.grad != 0


def test_standardise_uses_the_unbiased_std():
    x = torch.randn(3, 4, 16, dtype=torch.float64)
    z = standardise(x).numpy()
    xn = x.numpy()
    want = (xn - xn.mean(-1, keepdims=True)) / xn.std(-1, ddof=1, keepdims=True)
    np.testing.assert_allclose(z, want, rtol=1e-12)


def test_concept_correlation_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)
    c = concept_correlation(x, y, max_words=32)
    np.testing.assert_allclose(c.numpy(), loop_correlation(x.numpy(), y.numpy(), 32), rtol=1e-12)
    loss = correlation_loss(c, 0.01, 0.005)
    assert loss["total"].item() == pytest.approx(loop_corr_loss(c.numpy(), 0.01, 0.005), rel=1e-12)
    assert loss["total"].item() == pytest.approx(0.01 * loss["on_diag"].item() + 0.005 * loss["off_diag"].item())


def test_identical_concepts_give_d_minus_one_over_l():
    # Each z has mean 0 and unbiased variance 1 over d channels: sum_c z_c^2 = (d - 1) * var = d - 1,
    # so C_kk = mean_b (d - 1) / L exactly, whatever the data.
    d, max_words = 16, 32
    x = torch.randn(9, 4, d, dtype=torch.float64)
    c = concept_correlation(x, x, max_words)
    torch.testing.assert_close(torch.diagonal(c), torch.full((4,), (d - 1) / max_words, dtype=torch.float64))
    # Positive per-sample rescaling (e.g. L2 normalisation) leaves C unchanged.
    torch.testing.assert_close(concept_correlation(x * 7.0, x.abs() + 1, max_words),
                               concept_correlation(x, x.abs() + 1, max_words))
    with pytest.raises(ValueError, match="one shape"):
        concept_correlation(x, x[:, :2], max_words)


def output(b=6, k=4, d=8, visual=True, textual=True, seed=2) -> ModelOutput:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return ModelOutput(similarity=r(b, b) * 0.3, logit_scale=torch.tensor(math.log(50.0), dtype=torch.float64),
                       text_concepts=r(b, k, d), video_concepts=r(b, k, d),
                       visual_tag_concepts=r(b, k, d) if visual else None,
                       textual_tag_concepts=r(b, k, d) if textual else None,
                       confidence=r(b, b, k), concept_cosine=r(b, b, k), pool_weights=r(b, b, 3))


def test_dicosa_total_is_cross_modal_plus_concept_loss():
    out = output(visual=False, textual=False)
    terms = training_loss(out, CFG)
    assert set(terms) == {"total", "sim", "sim_t2v", "sim_v2t", "concept"}
    c = loop_correlation(out.text_concepts.numpy(), out.video_concepts.numpy(), 32)
    want = loop_info_nce(out.similarity.numpy(), 50.0) + loop_corr_loss(c, 0.01, 0.005)
    assert terms["total"].item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("visual, textual", [(True, True), (True, False), (False, True)])
def test_macvr_total_adds_the_weighted_alignment_terms(visual, textual):
    out = output(visual=visual, textual=textual)
    cfg = LossConfig(alpha=0.02, beta=0.003, max_words=16, alpha_align=0.5)
    terms = training_loss(out, cfg)
    np_ = lambda t: t.numpy()  # noqa: E731
    base = loop_info_nce(np_(out.similarity), 50.0) + loop_corr_loss(
        loop_correlation(np_(out.text_concepts), np_(out.video_concepts), 16), 0.02, 0.003)
    align = 0.0
    if textual:  # Loss(C^{t, at})
        want = loop_corr_loss(loop_correlation(np_(out.text_concepts), np_(out.textual_tag_concepts), 16), 0.02, 0.003)
        assert terms["align_text"].item() == pytest.approx(want, rel=1e-12)
        align += want
    else:
        assert "align_text" not in terms
    if visual:  # Loss(C^{av, v})
        want = loop_corr_loss(loop_correlation(np_(out.visual_tag_concepts), np_(out.video_concepts), 16), 0.02, 0.003)
        assert terms["align_visual"].item() == pytest.approx(want, rel=1e-12)
        align += want
    else:
        assert "align_visual" not in terms
    assert terms["align"].item() == pytest.approx(align, rel=1e-12)
    assert terms["total"].item() == pytest.approx(base + 0.5 * align, rel=1e-12)
    no_align = training_loss(out, LossConfig(alpha=0.02, beta=0.003, max_words=16, alpha_align=0.0))
    assert no_align["total"].item() == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=-1.0), "alpha"), (dict(beta=math.nan), "beta"), (dict(max_words=0), "max_words"),
    (dict(alpha_align=math.inf), "alpha_align"),
])
def test_loss_config_validation(kwargs, message):
    base = dict(alpha=0.01, beta=0.005, max_words=32, alpha_align=1.0)
    with pytest.raises(ValueError, match=message):
        LossConfig(**{**base, **kwargs})
    if "max_words" not in kwargs:  # the params part validates the same way on its own
        with pytest.raises(ValueError, match=message):
            LossParams(**{k: v for k, v in {**base, **kwargs}.items() if k != "max_words"})
