"""The regime question: how a variant's difference to the baseline moves with training and context.

    gap_over_training(histories)           # per tag and evaluation: mean difference to the baseline, 95% Welch
    gap_by_budget(runs, metric)            # per variant and budget (tokens seen): the same, from finished runs
    load_regime(preset); by_budget, by_context   # the regime experiment's runs and their differences
    context_change(regime)                 # does the gap move with the context? (difference of differences)
    fit_gap(points, at_tokens)             # gap = a + b·log2(tokens): slope per doubling, extrapolated
    metric_for(runs)                       # which checkpoint a comparison of training lengths uses

Every difference is a variant's mean minus the baseline's mean over seeds of the same budget, with
a 95% Welch interval; nothing here is fitted to look good, every number comes from results files.
"""

import math

import numpy as np
import pandas as pd

from .results import contrast, holm, judge, welch, welch_p  # noqa: F401 (holm, welch_p: re-exported)


def gap_over_training(histories, baseline="baseline", split="val_loss"):
    """Rows (tag, iter, diff, lo, hi, n): each tag's periodic val estimate minus the baseline's, per evaluation.

    histories: load_histories(...) of the baseline's and the variants' runs (same iterations).
    """
    base = histories[histories.tag == baseline]
    rows = []
    for tag, g in histories[histories.tag != baseline].groupby("tag", sort=False):
        for it, gi in g.groupby("iter"):
            b = base.loc[base["iter"] == it, split]
            if len(gi) < 2 or len(b) < 2:
                continue
            w = welch(gi[split], b)
            rows.append({"tag": tag, "iter": it, "diff": w["diff"], "lo": w["lo"], "hi": w["hi"], "n": len(gi)})
    return pd.DataFrame(rows)


def gap_by_budget(runs, metric, tokens_per_iter, baseline="baseline"):
    """Rows (variant, iters, tokens, diff, lo, hi, p, n, n_base) from a table of finished runs.

    runs: load_runs rows with `variant`, `iters` and the metric; each (variant, iters) group is compared
    with the baseline's runs of the same iterations.
    """
    rows = []
    for (variant, iters), g in runs[runs.variant != baseline].groupby(["variant", "iters"]):
        b = runs[(runs.variant == baseline) & (runs.iters == iters)][metric]
        if len(g) < 2 or len(b) < 2:
            continue
        w = welch(g[metric], b)
        rows.append({"variant": variant, "iters": int(iters), "tokens": int(iters) * tokens_per_iter,
                     "diff": w["diff"], "lo": w["lo"], "hi": w["hi"], "p": welch_p(g[metric], b),
                     "n": len(g), "n_base": len(b), "base_mean": b.mean(), "mean": g[metric].mean()})
    return pd.DataFrame(rows)


def fit_gap(points, at_tokens, conf=0.95):
    """Weighted least squares gap = a + b·log2(tokens) over one variant's budgets; extrapolate to at_tokens.

    Each point is weighted by 1/se² (se from its Welch interval's half-width). Returns slope per
    doubling of tokens with its interval, the tokens at which the fitted gap reaches 0 (None if the
    slope does not point there), and the extrapolated gap at `at_tokens` with its interval. With k
    points the fit has k−2 degrees of freedom: the intervals use Student's t with that many.
    """
    from scipy import stats
    x = np.log2(points.tokens.to_numpy(float))
    y = points["diff"].to_numpy(float)
    se = ((points.hi - points.lo).to_numpy(float) / 2) / stats.t.ppf(0.975, np.maximum(points.n - 1, 1))
    w = 1 / np.maximum(se, 1e-6) ** 2
    X = np.stack([np.ones_like(x), x], 1)
    cov_unscaled = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov_unscaled @ X.T @ (w * y)
    dof = len(x) - 2
    resid = y - X @ beta
    # scale by the residual variance when there are spare points: the curve may not be a straight line in log tokens
    s2 = max(1.0, float(resid @ (w * resid)) / dof) if dof > 0 else 1.0
    cov = cov_unscaled * s2
    t = stats.t.ppf(0.5 + conf / 2, max(dof, 1))
    x0 = math.log2(at_tokens)
    pred = beta[0] + beta[1] * x0
    pred_se = math.sqrt(np.array([1, x0]) @ cov @ np.array([1, x0]))
    slope_se = math.sqrt(cov[1, 1])
    zero = None  # where the fitted line reaches 0, if that lies beyond the longest budget
    if beta[1] != 0 and -beta[0] / beta[1] > x.max():
        zero = 2 ** (-beta[0] / beta[1])
    return {"intercept": beta[0], "slope": beta[1], "slope_lo": beta[1] - t * slope_se,
            "slope_hi": beta[1] + t * slope_se, "dof": dof, "zero_tokens": zero, "at_tokens": at_tokens,
            "pred": pred, "pred_lo": pred - t * pred_se, "pred_hi": pred + t * pred_se}


METRIC_WORDS = {"final_val_loss_full": "the final checkpoint on the whole validation split",
                "val_loss_full": "the best checkpoint (picked by the periodic estimate), on the whole validation split"}
OVERFIT_NATS = 0.01  # a run whose final checkpoint is this much worse than its best has over-fitted


def metric_for(runs):
    """Which checkpoint a comparison across training lengths uses (the book's checkpoint rule).

    The final checkpoint where every run recorded it and none over-fits (its whole-split loss within
    OVERFIT_NATS of the best checkpoint's): then the best is the same model picked by a noisy estimate,
    and the pick only adds noise. Where any run over-fits, the final checkpoint measures the over-fitting
    rather than the architecture, and the best checkpoint (nanoGPT's and the original's) is compared.
    """
    col = runs.get("final_val_loss_full")
    if col is None or col.isna().any():
        return "val_loss_full"
    return "val_loss_full" if (col - runs.val_loss_full).max() > OVERFIT_NATS else "final_val_loss_full"


def load_regime(preset, root=None, variants=None):
    """Finished runs of the regime experiment: the preset's own runs (1×), the longer budgets and the
    longer context, one row each, with `budget` (× the preset's iterations), `tokens` seen and `kind`."""
    from .experiments import Run
    from .results import load_runs
    from .study import BUDGETS, REGIME_VARIANTS, budget_runs, context_runs
    variants = variants or REGIME_VARIANTS
    planned = ([Run(preset, v, 0) for v in variants] + budget_runs(preset, variants, {k: 1 for k in BUDGETS})
               + context_runs(preset, variants, 1))
    df = load_runs(preset, root, tags={r.name for r in planned})
    if df.empty:
        return df
    base_iters = planned[0].config().max_iters
    df["budget"] = df.iters / base_iters
    df["tokens_per_iter"] = [_tokens_per_iter(p) for p in df.path]
    df["tokens"] = df.iters * df.tokens_per_iter
    df["kind"] = ["context" if "+ctx" in t else "budget" for t in df.tag]
    if "final_val_loss_full" not in df:
        df["final_val_loss_full"] = np.nan
    return df


def _tokens_per_iter(run_dir):
    from pathlib import Path

    from ..checkpoint import read_json
    c = read_json(Path(run_dir) / "config.json")
    return c["batch_size"] * c["model"]["block_size"] * c["gradient_accumulation_steps"]


def by_budget(regime, metric="val_loss_full", baseline="baseline"):
    """gap_by_budget over the budget runs (context runs left out): one row per variant and budget."""
    b = regime[regime.kind == "budget"].dropna(subset=[metric])
    rows = gap_by_budget(b, metric, int(b.tokens_per_iter.iloc[0]), baseline) if len(b) else pd.DataFrame()
    if len(rows):
        rows["budget"] = rows.iters / b.iters.min()
        rows = judge(rows)  # one family: every budget of every variant
    return rows


def by_context(regime, metric="val_loss_full", baseline="baseline"):
    """Per variant: its difference to the baseline at the preset's context and at the longer one (1× budget)."""
    one = regime[regime.budget == 1]
    rows = []
    for _, g in one.groupby("kind"):
        base = g[g.variant == baseline][metric]
        for v, gv in g[g.variant != baseline].groupby("variant"):
            if len(gv) >= 2 and len(base) >= 2:
                w = welch(gv[metric], base)
                rows.append({"variant": v, "block_size": int(gv.block_size.iloc[0]), "diff": w["diff"],
                             "lo": w["lo"], "hi": w["hi"], "p": welch_p(gv[metric], base), "n": len(gv),
                             "n_base": len(base)})
    rows = pd.DataFrame(rows)
    return judge(rows) if len(rows) else rows


def context_change(regime, metric="val_loss_full", baseline="baseline"):
    """Per variant: its gap at the longer context minus its gap at the preset's (1× budget), 95% interval.

    Rows (variant, short, long, gap_short, gap_long, change, lo, hi, base_short, base_long); a variant needs
    ≥ 2 seeds of itself and of the baseline at both contexts.
    """
    one = regime[regime.budget == 1]
    sizes = sorted(one.block_size.unique())
    if len(sizes) < 2:
        return pd.DataFrame()
    short, long_ = sizes[0], sizes[-1]

    def seeds(v, L):
        return one[(one.variant == v) & (one.block_size == L)][metric].to_numpy()

    rows = []
    for v in sorted(set(one.variant) - {baseline}):
        g = [seeds(v, long_), seeds(baseline, long_), seeds(v, short), seeds(baseline, short)]
        if min(map(len, g)) < 2:
            continue
        c = contrast(g, (1, -1, -1, 1))
        rows.append({"variant": v, "short": int(short), "long": int(long_), "gap_short": g[2].mean() - g[3].mean(),
                     "gap_long": g[0].mean() - g[1].mean(), "change": c["diff"], "lo": c["lo"], "hi": c["hi"],
                     "base_short": g[3].mean(), "base_long": g[1].mean(), "var_short": g[2].mean(),
                     "var_long": g[0].mean()})
    return pd.DataFrame(rows)


def fit_power(points, at_tokens):
    """The other extrapolation: |gap| = c·tokens^(−α), a gap that decays towards 0 and never crosses it.

    Fitted by least squares on log|gap| (only where every point has the same sign); returns α and the
    extrapolated gap. No interval: with 3–4 points it only shows how much the answer depends on the form.
    """
    d = points["diff"].to_numpy(float)
    if len(d) < 2 or not (np.all(d < 0) or np.all(d > 0)):
        return None
    slope, inter = np.polyfit(np.log(points.tokens.to_numpy(float)), np.log(np.abs(d)), 1)
    return {"alpha": -slope, "pred": float(np.sign(d[0]) * np.exp(inter + slope * np.log(at_tokens)))}


def plain(obj):
    """obj with numpy scalars turned into Python ones, recursively: ready for json.dumps."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def seed_gaps(points, regime, metric):
    """Each seed's difference to its budget's baseline mean: rows (variant, tokens, diff), the dots beside a mean."""
    rows = []
    for r in points.itertuples():
        seeds = regime[(regime.variant == r.variant) & (regime.iters == r.iters) & (regime.kind == "budget")][metric]
        rows += [{"variant": r.variant, "tokens": r.tokens, "diff": float(x - r.base_mean)} for x in seeds]
    return pd.DataFrame(rows, columns=["variant", "tokens", "diff"])


def baseline_curve(regime):
    """The baseline's runs at the longest budget and what their mean validation estimate does at the end.

    Returns (runs, summary) with summary {budget, best_iter, rise (end − minimum), generalisation_gap (val −
    train at the end), overfits (rise > OVERFIT_NATS)}.
    """
    from .results import load_histories
    b = regime[(regime.variant == "baseline") & (regime.kind == "budget")]
    longest = b[b.budget == b.budget.max()]
    h = load_histories(longest.path)
    v, t = h.groupby("iter").val_loss.mean(), h.groupby("iter").train_loss.mean()
    rise = float(v.iloc[-1] - v.min())
    return h, {"budget": float(longest.budget.iloc[0]), "best_iter": int(v.idxmin()), "rise": rise,
               "generalisation_gap": float(v.iloc[-1] - t.iloc[-1]), "overfits": rise > OVERFIT_NATS}


def checkpoint_table(scales):
    """Per (name, runs): how far the final checkpoint's whole-split loss lies above the best's, and which
    checkpoint metric_for therefore compares (chapter 6, section 2.6)."""
    rows = []
    for name, r in scales:
        rise = r.final_val_loss_full - r.val_loss_full
        rows.append({"scale": name, "runs": len(r), "final − best: mean": rise.mean(), "max": rise.max(),
                     "compared by": metric_for(r)})
    return pd.DataFrame(rows).round(4).set_index("scale")

