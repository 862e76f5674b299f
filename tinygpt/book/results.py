"""Finished runs as tables, and the one rule every comparison with the baseline in the book uses.

The rule (`verdict`, applied to a whole table by `judge`): each comparison gets the 95% Welch interval of
its mean difference and the two-sided Welch p value, and the p values of one table (its family: the
variants of one scale's main table, the budgets of the regime experiment, …) are adjusted by Holm's
step-down rule, which keeps the chance of any false "better" or "worse" in the family at 5%.

- "better": the interval lies wholly below 0 *and* the Holm-adjusted p is below 0.05;
- "worse": the interval lies wholly above 0 and the adjusted p is below 0.05;
- "matches": the interval covers 0 and is narrower than MATCH_WIDTH nats;
- "inconclusive": anything else (too few seeds for the noise, or an effect that does not survive Holm).
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..checkpoint import read_json
from .experiments import results_root

MATCH_WIDTH = 0.05  # nats: the widest 95% interval that still counts as "matches"
ALPHA = 0.05  # family-wise error rate of the better/worse verdicts (Holm)
# What "best val loss" means in every comparison: the best checkpoint (chosen by nanoGPT's periodic
# eval_iters-batch estimate) evaluated on the whole validation split, free of sampling noise.
METRIC = "val_loss_full"


def load_runs(preset, root=None, tags=None):
    """One row per finished run under results/<preset>/: tag, seed, metrics and key config fields."""
    rows = []
    base = results_root(root) / preset
    for metrics in sorted(base.glob("*/seed*/metrics.json")):
        run = metrics.parent
        tag = run.parent.name
        if tags is not None and tag not in tags:
            continue
        cfg = read_json(run / "config.json")
        m = read_json(metrics)
        if "val_loss_full" not in m:  # runs from before this metric existed: compute it once, keep it
            m = _add_full_val(run, cfg, m)
        rows.append({"tag": tag, "variant": cfg["model"]["variant"], "seed": cfg["seed"], **m,
                     "n_layer": cfg["model"]["n_layer"], "n_head": cfg["model"]["n_head"],
                     "n_embd": cfg["model"]["n_embd"], "block_size": cfg["model"]["block_size"],
                     "dropout": cfg["model"]["dropout"], "dataset": cfg["dataset"],
                     "data_fraction": cfg["data_fraction"], "path": str(run)})
    return pd.DataFrame(rows)


def _add_full_val(run, cfg, m):
    from ..checkpoint import load, write_json
    from ..data import load_dataset
    from ..train import full_val_loss
    if not (run / "best.pt").exists():
        return {**m, "val_loss_full": float("nan")}
    m = {**m, "val_loss_full": full_val_loss(load(run / "best.pt"), load_dataset(cfg["dataset"]),
                                             cfg["model"]["block_size"])}
    write_json(run / "metrics.json", m)
    return m


def load_histories(run_dirs):
    """Long table of every evaluation of the given runs: tag, seed, iter, train_loss, val_loss, lr."""
    frames = []
    for run in map(Path, run_dirs):
        h = read_json(run / "history.json")
        df = pd.DataFrame(h["evals"])
        df["tag"], df["seed"] = run.parent.name, h["config"]["seed"]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def welch(a, b, conf=0.95):
    """Mean of a − mean of b with its Welch t interval: dict(diff, lo, hi, dof)."""
    return contrast([a, b], (1, -1), conf)


def contrast(groups, signs, conf=0.95):
    """Σ_k sign_k·mean(group_k) with a Welch–Satterthwaite t interval: dict(diff, lo, hi, dof).

    With groups (a, b) and signs (1, −1) this is `welch(a, b)`; with four groups (v₂, b₂, v₁, b₁) and signs
    (1, −1, −1, 1) it is the change of a variant's gap between two settings, each group's seeds independent.
    """
    from scipy import stats
    groups = [np.asarray(g, float) for g in groups]
    terms = [g.var(ddof=1) / len(g) for g in groups]
    diff = float(sum(s * g.mean() for s, g in zip(signs, groups)))
    se = math.sqrt(sum(terms))
    if se == 0:
        return {"diff": diff, "lo": diff, "hi": diff, "dof": float("inf")}
    dof = se ** 4 / sum(t ** 2 / (len(g) - 1) for t, g in zip(terms, groups))
    half = float(stats.t.ppf(0.5 + conf / 2, dof)) * se
    return {"diff": diff, "lo": diff - half, "hi": diff + half, "dof": dof}


def welch_p(a, b):
    """Two-sided p value of Welch's t test for mean(a) − mean(b)."""
    from scipy import stats
    return float(stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False).pvalue)


def holm(pvalues):
    """Holm's step-down adjusted p values (same order as given): controls the family-wise error rate."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    adj = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def verdict(lo, hi, p_holm=0.0, width=MATCH_WIDTH):
    """The book's rule for one comparison (module docstring): better, worse, matches or inconclusive."""
    if (hi < 0 or lo > 0) and p_holm < ALPHA:
        return "better" if hi < 0 else "worse"
    return "matches" if lo <= 0 <= hi and hi - lo < width else "inconclusive"


def judge(rows, lo="lo", hi="hi", p="p", width=MATCH_WIDTH):
    """The rule applied to a table of comparisons (one family): adds "p (Holm)" and "verdict" columns.

    Rows without a p value (the baseline's own row) get neither.
    """
    out = rows.copy()
    has = out[p].notna() if p in out else pd.Series(False, index=out.index)
    out["p (Holm)"] = np.nan
    out.loc[has, "p (Holm)"] = holm(out.loc[has, p]) if has.any() else []
    out["verdict"] = [verdict(a, b, q, width) if ok else None
                      for a, b, q, ok in zip(out[lo], out[hi], out["p (Holm)"], has)]
    return out


def compare(runs, baseline="baseline", metric=METRIC, width=MATCH_WIDTH):
    """Per tag: n, mean ± std of `metric`, the difference to `baseline` with its 95% interval, p, p (Holm), verdict.

    The table is one family: Holm adjusts over its comparisons.
    """
    base = runs.loc[runs.tag == baseline, metric]
    if len(base) < 2:
        raise ValueError(f"need ≥ 2 seeds of {baseline!r} to compare against (found {len(base)})")
    rows = []
    for tag, g in runs.groupby("tag", sort=False):
        row = {"tag": tag, "n": len(g), "mean": g[metric].mean(), "std": g[metric].std(ddof=1)}
        if tag != baseline and len(g) >= 2:
            w = welch(g[metric], base)
            row.update(diff=w["diff"], ci_lo=w["lo"], ci_hi=w["hi"], p=welch_p(g[metric], base))
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("diff", "ci_lo", "ci_hi", "p"):
        if col not in out:
            out[col] = np.nan
    out = judge(out, lo="ci_lo", hi="ci_hi", width=width)
    order = [baseline] + [t for t in out.tag if t != baseline]
    return out.set_index("tag").loc[order].reset_index()
