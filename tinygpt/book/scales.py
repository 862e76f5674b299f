"""The book's two scales: the cpu preset (every chapter, on a laptop) and the gpu preset (the original's own
configuration, on a lent GPU), and what each page says about where it was computed.

    describe(preset)              # "6 layers × 6 heads, width 384, context 256, …, ≈ 82 M tokens seen"
    page_provenance(notebook)     # preset, date, machine, versions and parameters of an executed page
    counterpart(notebook)         # the same chapter at the other scale (book/gpu/<name> ↔ book/<name>)
"""

import json
from pathlib import Path

SCALE_NAMES = {"cpu": "the cpu preset", "gpu": "the gpu preset, the original's scale", "smoke": "the smoke preset"}


def tokens_seen(cfg):
    return cfg.max_iters * cfg.batch_size * cfg.model.block_size * cfg.gradient_accumulation_steps


def describe(preset, **overrides):
    """One line: the preset's model and training, as a reader compares two scales."""
    from ..presets import make_config

    cfg = make_config(preset, **overrides)
    m = cfg.model
    return (f"{m.n_layer} layers × {m.n_head} heads, width {m.n_embd}, context {m.block_size}, dropout {m.dropout:g}; "
            f"{cfg.max_iters:,} iterations × {cfg.batch_size * m.block_size:,} tokens ≈ "
            f"{tokens_seen(cfg) / 1e6:.1f} M tokens seen")


def page_provenance(notebook):
    """What an executed page records about its execution, or None for a page no `book run` executed.

    From the notebook's metadata (papermill's parameters, `tinygpt_run`) and its folder's _run_log.json
    (device, versions): {preset, started_at, seconds, device, torch, python, parameters}.
    """
    notebook = Path(notebook)
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return None
    params = dict((meta.get("papermill") or {}).get("parameters") or {})
    run = meta.get("tinygpt_run") or {}
    preset = run.get("preset") or params.get("preset")
    if not preset:
        return None
    try:
        log = json.loads((notebook.parent / "_run_log.json").read_text(encoding="utf-8"))
        entry = log.get("notebooks", {}).get(notebook.stem, {})
    except (OSError, ValueError, AttributeError):
        entry = {}
    return {"preset": preset, "started_at": run.get("started_at") or entry.get("started_at"),
            "seconds": run.get("seconds") or entry.get("seconds"), "device": entry.get("device"),
            "torch": entry.get("torch"), "python": entry.get("python"),
            "parameters": {k: v for k, v in params.items() if k != "preset"}}


def counterpart(notebook):
    """The same chapter executed at the other scale, if the book holds it: book/<name> ↔ book/<preset>/<name>."""
    from ..presets import PRESETS

    notebook = Path(notebook)
    if notebook.parent.name in PRESETS:
        other = notebook.parent.parent / notebook.name
        return other if other.exists() else None
    for sub in sorted(p for p in notebook.parent.iterdir() if p.is_dir() and p.name in PRESETS):
        if (sub / notebook.name).exists():
            return sub / notebook.name
    return None


def provenance_text(info):
    """The sentence at the top of a page: its scale, then where and when it was executed, with what."""
    preset = info["preset"]
    try:
        what = describe(preset)
    except (KeyError, ValueError):
        what = "an unknown preset"
    when = (info.get("started_at") or "").replace("T", " ")[:16]
    where = ", ".join(x for x in (info.get("device"), info.get("torch") and f"torch {info['torch']}",
                                  info.get("python") and f"Python {info['python']}") if x)
    params = ", ".join(f"{k}={v}" for k, v in info["parameters"].items())
    return (f"Computed at {SCALE_NAMES.get(preset, f'the {preset} preset')} ({what}). Executed {when} UTC"
            + (f" on {where}" if where else "") + f" by `tinygpt book run --preset {preset}`"
            + (f" with {params}" if params else "") + ".")


# ----------------------------------------------------------------------------- the measurement at the gpu scale

REFERENCE = "gpu"  # the original's scale: where the book's question is finally decided
CLOSE_NATS = 0.01  # a head start is "closed" once the mean gap of the periodic estimates is within this


def scale_comparison(preset=REFERENCE, root=None):
    """A scale's runs and main table (study.main_table), with each tag's best iteration and the final
    checkpoint's difference to the baseline: what over-fitting does to a comparison of final checkpoints.

    Returns (runs, table, final) where final has one row per variant: diff, lo, hi, p, p (Holm), verdict of
    the final checkpoints (whole split), and the mean rise from the best checkpoint to the final one.
    """
    import pandas as pd

    from .results import compare
    from .study import main_table

    runs, table = main_table(preset, root)
    if runs.empty:
        return runs, table, pd.DataFrame()
    final = compare(runs.dropna(subset=["final_val_loss_full"]), metric="final_val_loss_full")
    rise = (runs.final_val_loss_full - runs.val_loss_full).groupby(runs.tag).mean()
    best_iter = runs.groupby("tag").best_iter.agg(lambda s: " / ".join(f"{int(i):,}" for i in s))
    final["rise"] = final.tag.map(rise)
    table = table.assign(best_iters=table.tag.map(best_iter), final_rise=table.tag.map(rise))
    return runs, table, final


def head_start(gap, tol=CLOSE_NATS):
    """Per tag: the first evaluation from which the mean gap (regime.gap_over_training) stays above −tol.

    Rows (tag, closed_at, gap_then, gap_first, gap_end): where the variants' early advantage is gone, the gap
    at it, at the first evaluation after iteration 0, and at the end.
    """
    import pandas as pd

    rows = []
    for tag, g in gap.groupby("tag", sort=False):
        g = g.sort_values("iter")
        below = g["diff"].to_numpy() < -tol
        last_below = max((i for i, b in enumerate(below) if b), default=-1)
        closed = g.iloc[last_below + 1] if last_below + 1 < len(g) else None
        rows.append({"tag": tag, "closed_at": None if closed is None else int(closed["iter"]),
                     "gap_then": None if closed is None else float(closed["diff"]),
                     "gap_first": float(g[g["iter"] > 0]["diff"].iloc[0]), "gap_end": float(g["diff"].iloc[-1]),
                     "iters": int(g["iter"].max())})
    return pd.DataFrame(rows)


def gaps_at(gap, iters):
    """The mean gap of each tag at the given evaluations, one column per iteration."""
    return gap[gap["iter"].isin(iters)].pivot(index="tag", columns="iter", values="diff")


def prediction_check(fits, final, best):
    """The cpu preset's extrapolation to the gpu scale's tokens beside what the gpu runs measured.

    fits: hypotheses.h3_fits at the cpu preset (final checkpoints, extrapolated with a straight line in log
    tokens and with a power law); final, best: the gpu scale's comparisons of final and best checkpoints.
    """
    import pandas as pd

    f, b = final.set_index("tag"), best.set_index("tag")
    rows = []
    for v, fit in fits.items():
        if v not in f.index:
            continue
        power = fit.get("power")
        rows.append({"variant": v, "predicted (line)": fit["pred"], "lo": fit["pred_lo"], "hi": fit["pred_hi"],
                     "predicted (power law)": power["pred"] if power and power["alpha"] > 0 else float("nan"),
                     "measured: final": f.loc[v, "diff"], "final lo": f.loc[v, "ci_lo"],
                     "final hi": f.loc[v, "ci_hi"], "measured: best": b.loc[v, "diff"]})
    out = pd.DataFrame(rows)
    if len(out):
        out["inside"] = (out.lo <= out["measured: final"]) & (out["measured: final"] <= out.hi)
    return out


def reference_root(root=None):
    """Where the gpu scale's runs are: the results folder in use if it holds them, else the repository's
    committed results/ (read only), so that a smoke run or a reader's work/results still shows them."""
    from .experiments import repo_root, results_root

    here = results_root(root)
    return here if any((here / REFERENCE).glob("*/seed*/metrics.json")) else repo_root() / "results"


def scale_points(table, final, tokens, runs=None):
    """A scale's comparisons as points on the tokens-seen axis: (points, seeds) with a `checkpoint` column,
    "best" from `table` and "final" from `final` (scale_comparison's); with `runs`, each seed's difference."""
    import pandas as pd

    pts, seeds = [], []
    for kind, t, metric in (("best", table, "val_loss_full"), ("final", final, "final_val_loss_full")):
        base = None if runs is None else runs[runs.tag == "baseline"][metric].mean()
        for r in t.dropna(subset=["diff"]).itertuples():
            pts.append({"variant": r.tag, "tokens": tokens, "diff": r.diff, "lo": r.ci_lo, "hi": r.ci_hi,
                        "checkpoint": kind})
            if runs is not None:
                seeds += [{"variant": r.tag, "tokens": tokens, "diff": x - base, "checkpoint": kind}
                          for x in runs[runs.tag == r.tag][metric]]
    return pd.DataFrame(pts), pd.DataFrame(seeds, columns=["variant", "tokens", "diff", "checkpoint"])


# ----------------------------------------------------------------------------- the site's provenance box

RUN_GROUPS = (("the main comparisons (baseline, variants, controls, shapes)", lambda tag: "+" not in tag),
              ("the regime experiment (longer budgets, longer context)", lambda tag: "+iters" in tag or "+ctx" in tag),
              ("the data-size experiment", lambda tag: "+frac" in tag or "+complete" in tag))


def run_groups(preset, root=None):
    """Per group of runs at a preset: how many finished and how many minutes of training they recorded."""
    from .results import load_runs

    runs = load_runs(preset, root)
    rows = []
    for name, belongs in RUN_GROUPS:
        g = runs[[belongs(t) for t in runs.tag]] if len(runs) else runs
        if len(g):
            rows.append({"group": name, "runs": len(g), "minutes": float(g.elapsed_s.sum() / 60)})
    return rows


def provenance_markdown(book_dir, root=None):
    """The site's provenance box, from the run logs of each scale's pages and the runs' own metrics files:
    which preset, machine and software produced the pages, when they were executed, and every run behind them."""
    import json

    from ..presets import PRESETS

    book_dir = Path(book_dir)
    folders = [("", book_dir)] + [(p.name, p) for p in sorted(book_dir.iterdir()) if p.is_dir() and p.name in PRESETS]
    lines = []
    for name, folder in folders:
        try:
            log = json.loads((folder / "_run_log.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pages = log.get("notebooks", {})
        preset = log.get("preset") or name
        if not pages:
            continue
        dates = sorted(p["started_at"][:10] for p in pages.values() if p.get("started_at"))
        first = next(iter(pages.values()))
        when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
        lines.append(f"- **{len(pages)} pages at the {preset} preset** ({describe(preset)}): executed {when} on "
                     f"{first.get('device')}, torch {first.get('torch')}, Python {first.get('python')}, by "
                     f"`tinygpt book run --preset {preset}`" + (f" (in `book/{name}/`)" if name else "") + ".")
        groups = run_groups(preset, root)
        if groups:
            total = sum(g["minutes"] for g in groups)
            lines.append(f"  Behind them, {sum(g['runs'] for g in groups)} runs and {total:,.0f} minutes of training "
                         "(each run's own record, `results/" + preset + "/*/seed*/metrics.json`): "
                         + "; ".join(f"{g['group']}: {g['runs']} runs, {g['minutes']:,.0f} min" for g in groups)
                         + ".")
    return "\n".join(lines) or "No executed pages yet: `tinygpt book run`."


def prediction_table(prediction):
    """prediction_check's rows as a table narrow enough for the column: each value with its interval in one cell."""
    import pandas as pd

    from .prose import interval

    return pd.DataFrame({
        "variant": prediction.variant,
        "predicted: line [95%]": interval(prediction, "predicted (line)", digits=3),
        "predicted: power law": pd.to_numeric(prediction["predicted (power law)"]).round(3),
        "measured: final [95%]": interval(prediction, "measured: final", "final lo", "final hi", digits=3),
        "measured: best": prediction["measured: best"].round(3)}).set_index("variant")
