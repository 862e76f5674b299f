"""tinygpt.book.regime: the statistics behind chapter 06's regime answer, checked on known inputs."""

import numpy as np
import pandas as pd
import pytest

from tinygpt.book import regime


def test_holm_matches_the_step_down_rule():
    # sorted p: 0.01·4 = 0.04, 0.03·3 = 0.09, 0.04·2 = 0.08 → max so far 0.09, 0.5·1 = 0.5
    assert regime.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert regime.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 0.8·2 capped at 1; never decreasing


def _points(slope, intercept=-0.2, budgets=(1, 2, 4, 8), half=0.02):
    tokens = np.array(budgets) * 1_536_000
    d = intercept + slope * np.log2(np.array(budgets))
    return pd.DataFrame({"tokens": tokens, "diff": d, "lo": d - half, "hi": d + half, "n": 3})


def test_fit_gap_recovers_slope_and_zero_crossing():
    fit = regime.fit_gap(_points(0.04), at_tokens=1_536_000 * 32)
    assert fit["slope"] == pytest.approx(0.04) and fit["slope_lo"] < 0.04 < fit["slope_hi"]
    assert fit["pred"] == pytest.approx(-0.2 + 0.04 * 5)
    assert fit["zero_tokens"] == pytest.approx(1_536_000 * 2 ** 5)  # −0.2 + 0.04·log2(k) = 0 at k = 32
    assert fit["pred_lo"] < fit["pred"] < fit["pred_hi"]


def test_fit_gap_has_no_zero_when_the_gap_grows():
    assert regime.fit_gap(_points(-0.03), at_tokens=1e8)["zero_tokens"] is None


def test_power_fit_decays_towards_zero():
    pts = _points(0.0)
    pts["diff"] = -0.2 * (pts.tokens / pts.tokens.iloc[0]) ** -0.5
    fit = regime.fit_power(pts, at_tokens=pts.tokens.iloc[0] * 16)
    assert fit["alpha"] == pytest.approx(0.5) and fit["pred"] == pytest.approx(-0.05)
    pts.loc[0, "diff"] = 0.01  # signs differ: no power law
    assert regime.fit_power(pts, 1e8) is None


def test_gap_by_budget_compares_within_a_budget():
    rows = [{"variant": v, "iters": it, "seed": s, "m": base + (-0.1 if v == "w" else 0) + 0.01 * s}
            for it, base in ((2000, 1.9), (4000, 1.7)) for v in ("baseline", "w") for s in range(3)]
    out = regime.gap_by_budget(pd.DataFrame(rows), "m", tokens_per_iter=768)
    assert out["diff"].tolist() == pytest.approx([-0.1, -0.1]) and out.tokens.tolist() == [2000 * 768, 4000 * 768]
    assert (out.p < 1e-3).all()  # t ≈ 12 with 4 degrees of freedom


def test_gap_over_training_per_evaluation():
    rows = [{"tag": t, "seed": s, "iter": it, "val_loss": 2.0 - it / 1000 + (0.05 if t == "v" else 0) + 0.01 * s}
            for t in ("baseline", "v") for s in range(3) for it in (0, 500, 1000)]
    gap = regime.gap_over_training(pd.DataFrame(rows))
    assert gap["iter"].tolist() == [0, 500, 1000] and gap["diff"].tolist() == pytest.approx([0.05] * 3)


def test_contrast_of_two_groups_is_welch():
    from tinygpt.book.results import welch
    a, b = [1.0, 1.2, 1.1, 1.4], [0.7, 0.9, 0.6]
    c, w = regime.contrast([a, b], (1, -1)), welch(a, b)
    assert [c[k] for k in ("diff", "lo", "hi", "dof")] == pytest.approx([w[k] for k in ("diff", "lo", "hi", "dof")])


def test_context_change_is_a_difference_of_gaps():
    rows = [{"variant": v, "budget": 1, "block_size": L, "m": base + gap + 0.01 * s}
            for L, base, gaps in ((64, 1.9, {"baseline": 0, "w": -0.1}), (256, 2.2, {"baseline": 0, "w": -0.4}))
            for v, gap in gaps.items() for s in range(3)]
    rows.append({"variant": "w", "budget": 2, "block_size": 64, "m": 9.0})  # other budgets are ignored
    out = regime.context_change(pd.DataFrame(rows), "m").iloc[0]
    assert (out.short, out.long) == (64, 256)
    assert [out.gap_short, out.gap_long, out.change] == pytest.approx([-0.1, -0.4, -0.3])
    assert out.lo < -0.3 < out.hi and out.hi < 0  # equal seed spreads: the interval is tight around −0.3
    assert out.base_long == pytest.approx(2.21)
