"""The regime question: how a variant's difference to the baseline moves with training and context.

    gap_over_training(histories)           # per tag and evaluation: mean difference to the baseline, 95% Welch
    gap_by_budget(runs, metric)            # per variant and budget (tokens seen): the same, from finished runs
    load_regime(preset); by_budget, by_context   # the regime experiment's runs and their differences
    context_change(regime)                 # does the gap move with the context? (difference of differences)
    fit_gap(points, at_tokens)             # gap = a + b·log2(tokens): slope per doubling, extrapolated
    holm(pvalues)                          # Holm's step-down adjustment for many comparisons

Every difference is a variant's mean minus the baseline's mean over seeds of the same budget, with
a 95% Welch interval; nothing here is fitted to look good, every number comes from results files.
"""

import math

import numpy as np
import pandas as pd

from .results import contrast, welch


def welch_p(a, b):
    """Two-sided p value of Welch's t test for mean(a) − mean(b)."""
    from scipy import stats
    return float(stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False).pvalue)


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


def holm(pvalues):
    """Holm's step-down adjusted p values (same order as given): controls the family-wise error rate."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def plot_gap_over_training(gap, ax, colors=None, markers=None):
    """Mean difference to the baseline against iteration, with its 95% band, one line per tag."""
    for tag, g in gap.groupby("tag", sort=False):
        kw = {"color": (colors or {}).get(tag), "marker": (markers or {}).get(tag, "o")}
        line, = ax.plot(g["iter"], g["diff"], ms=4, label=f"{tag} (n={g.n.max()})", **kw)
        ax.fill_between(g["iter"], g.lo, g.hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0, color="k", lw=1)
    ax.set(xlabel="iteration", ylabel="val loss − baseline's (nats/char)",
           title="difference to the baseline during training (mean, 95% Welch band)")
    return ax


METRIC_WORDS = {"final_val_loss_full": "the final checkpoint on the whole validation split",
                "val_loss_full": "the best checkpoint by the periodic estimate, on the whole validation split"}


def metric_for(regime_runs):
    """The final checkpoint's whole-split loss if every run recorded it (no noisy pick), else the best one's."""
    col = regime_runs.get("final_val_loss_full")
    return "final_val_loss_full" if col is not None and col.notna().all() else "val_loss_full"


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
    return pd.DataFrame(rows)


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
                     "base_short": g[3].mean(), "base_long": g[1].mean()})
    return pd.DataFrame(rows)


def plot_gap_by_tokens(points, regime, metric, ax, colors=None, markers=None, target=None):
    """Each variant's difference to the baseline against tokens seen (log), 95% Welch bars, and each seed's
    difference to the baseline's mean as a dot beside its mean; `target` marks the original's tokens."""
    for i, (v, g) in enumerate(points.groupby("variant", sort=False)):
        g = g.sort_values("tokens")
        kw = {"color": (colors or {}).get(v), "marker": (markers or {}).get(v, "o")}
        shift = 1.06 ** (i - 1)  # side by side, so bars and dots do not hide each other
        bars = ax.errorbar(g.tokens * shift, g["diff"], yerr=[g["diff"] - g.lo, g.hi - g["diff"]], capsize=3,
                           label=v, **kw)
        for _, r in g.iterrows():
            seeds = regime[(regime.variant == v) & (regime.iters == r.iters) & (regime.kind == "budget")][metric]
            ax.scatter([r.tokens * shift * 1.025] * len(seeds), seeds - r.base_mean, s=9, alpha=0.6,
                       color=bars.lines[0].get_color(), zorder=3)
    ax.axhline(0, color="k", lw=1)
    if target:
        ax.axvline(target, color="gray", ls="--", lw=1)
        ax.annotate("the original's\ntokens seen", (target, ax.get_ylim()[1]), ha="right", va="top", fontsize=8,
                    color="gray")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="tokens seen in training (log₂ scale)", ylabel="val loss − baseline's (nats/char)",
           title="difference to the baseline against the training budget (95% Welch; dots: seeds)")
    return ax


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
