"""Finished runs as tables, and the statistics every comparison with the baseline uses.

A variant "matches" the baseline when the 95% Welch interval of its mean difference in METRIC
covers 0 and is narrower than MATCH_WIDTH nats; an interval wholly below 0 is "better", wholly
above 0 "worse", anything else "inconclusive".
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..checkpoint import read_json
from .experiments import results_root

MATCH_WIDTH = 0.05  # nats: the widest 95% interval that still counts as "matches"
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


def verdict(lo, hi, width=MATCH_WIDTH):
    if hi < 0:
        return "better"
    if lo > 0:
        return "worse"
    return "matches" if hi - lo < width else "inconclusive"


def compare(runs, baseline="baseline", metric=METRIC, width=MATCH_WIDTH):
    """Per tag: n, mean ± std of `metric`, and the difference to `baseline` with its 95% interval."""
    base = runs.loc[runs.tag == baseline, metric]
    if len(base) < 2:
        raise ValueError(f"need ≥ 2 seeds of {baseline!r} to compare against (found {len(base)})")
    rows = []
    for tag, g in runs.groupby("tag", sort=False):
        row = {"tag": tag, "n": len(g), "mean": g[metric].mean(), "std": g[metric].std(ddof=1)}
        if tag != baseline and len(g) >= 2:
            w = welch(g[metric], base)
            row.update(diff=w["diff"], ci_lo=w["lo"], ci_hi=w["hi"], verdict=verdict(w["lo"], w["hi"], width))
        rows.append(row)
    out = pd.DataFrame(rows)
    order = [baseline] + [t for t in out.tag if t != baseline]
    return out.set_index("tag").loc[order].reset_index()


def summary_lines(table):
    """Markdown bullets of a comparison: the baseline, then each variant's difference and verdict."""
    base = table[table.tag == "baseline"].iloc[0]
    lines = [f"- baseline: {base['mean']:.4f} ± {base['std']:.4f} (n={base.n}) best val loss (nats/char)"]
    return lines + [f"- **{r.tag}**: {r['mean']:.4f} ± {r['std']:.4f} (n={r.n}), difference {r['diff']:+.4f} "
                    f"[{r.ci_lo:+.4f}, {r.ci_hi:+.4f}] → **{r.verdict}**"
                    for _, r in table.dropna(subset=["diff"]).iterrows()]
