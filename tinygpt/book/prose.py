"""Sentences the chapters state about their results, built from the numbers they describe.

Every word that judges ("better", "largest", "shrinks", "deficit") is chosen here from the numbers and
the verdicts, never typed into a notebook, so tests/test_prose.py can render each summary from the
stored results (results/cpu/) and check the words against them.
"""

import numpy as np
import pandas as pd

Z_NOISE = 2.0  # a single-seed run further than this many baseline std from the baseline mean is beyond seed noise
SAME_SPAN = 0.25  # spans within ±25% of each other are "about as long"


def span_trend(first, last, tol=SAME_SPAN):
    """'shorter' / 'longer' / 'about as long' for the last layer's median span against the first's."""
    if first <= 0 or abs(last / first - 1) <= tol:
        return "about as long"
    return "longer" if last > first else "shorter"


def span_line(tag, medians, n_layer):
    """A chapter-2 bullet: the median span of the first and the last layer, with the trend in words."""
    first, last = medians[0], medians[-1]
    trend = span_trend(first, last)
    what = {"about as long": "about as long in the last layer as in the first",
            "longer": "longer in the last layer", "shorter": "shorter in the last layer"}[trend]
    return (f"- {tag}: median span {first:.1f} tokens in layer 0 and {last:.1f} in layer {n_layer - 1} ({what}; "
            f"the original saw long windows early and short ones in the last layer)")


def gap_at(gap, tag, it):
    """The row of gap_over_training for `tag` at the evaluation nearest to iteration `it`."""
    g = gap[gap.tag == tag]
    return g.iloc[int(np.argmin(np.abs(g["iter"].to_numpy() - it)))]


def gap_trend(early, late, tol=0.2):
    """How a difference to the baseline moved between two rows of gap_over_training (diff, lo, hi)."""
    clear = lambda r: r.hi < 0 or r.lo > 0  # noqa: E731 - its interval excludes zero
    if not clear(early) and not clear(late):
        return "stays within seed noise"
    if not clear(early):
        return "opens up"
    if not clear(late):
        return "closes to within seed noise"
    if np.sign(early["diff"]) != np.sign(late["diff"]):
        return "changes sign"
    if abs(late["diff"]) < abs(early["diff"]) * (1 - tol):
        return "shrinks"
    if abs(late["diff"]) > abs(early["diff"]) * (1 + tol):
        return "grows"
    return "stays about the same"


def _names(items):
    """"a", "a and b", "a, b and c"; "" for none."""
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _side(row):
    return "lies below zero" if row.hi < 0 else "lies above zero" if row.lo > 0 else "covers zero"


def gap_paragraph(gap, checkpoints=(500,)):
    """A paragraph that reads the figure of the difference to the baseline over training: the tags whose
    difference moves the same way (gap_trend) and end on the same side of zero share one sentence."""
    if gap.empty:
        return "There are not enough seeds of each run to draw the difference over training."
    groups = {}
    for tag in dict.fromkeys(gap.tag):
        g = gap[gap.tag == tag]
        end = g.iloc[-1]
        marks = [c for c in checkpoints if c < end["iter"]] or [g["iter"].iloc[len(g) // 2]]  # short runs: mid-way
        early = gap_at(gap, tag, marks[0])
        groups.setdefault((gap_trend(early, end), _side(end)), []).append((tag, early, end))
    sentences = []
    for (trend, side), rows in groups.items():
        many = len(rows) > 1
        start = ", ".join(f"{e['diff']:+.3f}" for _, e, _ in rows)
        stop = ", ".join(f"{x['diff']:+.3f}" for _, _, x in rows)
        its = "every interval" if many else "its interval"
        sentences.append(
            f"For {_names(f'**{t}**' for t, _, _ in rows)} the difference {trend} between iteration "
            f"{int(rows[0][1]['iter']):,} and the end of training (from {start} to {stop} nats"
            + (", in that order" if many else "") + f"); at the end {its} {side}.")
    return " ".join(sentences)


def summary_lines(table):
    """Markdown bullets of a comparison: the baseline, then each variant's difference and verdict."""
    base = table[table.tag == "baseline"].iloc[0]
    lines = [f"- baseline: {base['mean']:.4f} ± {base['std']:.4f} (n={base.n}) best val loss (nats/char)"]
    return lines + [f"- **{r.tag}**: {r['mean']:.4f} ± {r['std']:.4f} (n={r.n}), difference {r['diff']:+.4f} "
                    f"[{r.ci_lo:+.4f}, {r.ci_hi:+.4f}] → **{r.verdict}**"
                    for _, r in table.dropna(subset=["diff"]).iterrows()]


def gate_correlation_line(mean_abs, gated="structure_gate", control="output_gate"):
    """Mean |r| of each gate with the structure, and what it means when the structure gate follows it less."""
    line = "- mean |r| between gate and structure: " + ", ".join(f"{t} {v:.2f}" for t, v in mean_abs.items())
    if gated in mean_abs and control in mean_abs:
        a, b = mean_abs[gated], mean_abs[control]
        if a < b:
            line += (f". The structure gate follows the structure *less* than the output gate ({a:.2f} against "
                     f"{b:.2f}), though only it is given the structure: the output gate's correlation comes from the "
                     f"token, which predicts where a head looks, so neither gate is evidence that the structure "
                     f"itself carries what the gate needs")
        else:
            line += (f". The structure gate follows the structure more than the output gate ({a:.2f} against "
                     f"{b:.2f}), which sees only the token")
    return line


def placement_line(table, post="structure_mlp", pre="structure_mlp_prenorm"):
    """Chapter 4: whether the post-norm placement, not the features, explains structure_mlp's difference."""
    t = table.set_index("tag")
    if post not in t.index or pre not in t.index:
        return None
    a, b = t.loc[post], t.loc[pre]
    line = (f"- post-norm {post} differs from the baseline by {a['diff']:+.4f} ({a.verdict}), the pre-norm control "
            f"by {b['diff']:+.4f} ({b.verdict}): ")
    if a.verdict == "worse":
        share = 1 - b["diff"] / a["diff"]
        return line + f"the placement accounts for {share:.0%} of the deficit"
    return line + "there is no deficit for the placement to explain at this preset (the original's 1.51 is not seen)"


def signal_line(sig, change_cols=("gate change", "f_bias", "f_loc"), ref="attention output"):
    """Chapter 4: each additive change structure_embedding makes, relative to the attention output it acts on."""
    ratios = {c: (sig[c] / sig[ref]).mean() for c in change_cols if c in sig}
    said = ", ".join(f"{c} {r:.2f}×" for c, r in ratios.items())
    biggest = max(ratios, key=ratios.get)
    r = ratios[biggest]
    size = "small next to" if r < 0.25 else "comparable to" if r < 1 else "larger than"
    return (f"- structure_embedding's changes to the residual stream, each as a share of the attention output's size "
            f"(RMS, mean over layers): {said}. The largest, {biggest}, is {size} the attention output")


# ----------------------------------------------------------------------------- chapter 5

def shape_summary(runs, bl, base, preset):
    """Chapter 5's summary. runs: one row per changed shape (tag, knob, value, val_loss_full, diff, z, gap,
    elapsed_s, params); bl: the baseline seeds (val_loss_full, gap, elapsed_s, params); base: knob → preset value."""
    mu, sd = bl.val_loss_full.mean(), bl.val_loss_full.std(ddof=1)
    effect = runs.assign(absz=runs.z.abs()).sort_values("absz", ascending=False)
    per_knob = effect.drop_duplicates("knob")
    top = per_knob.iloc[0]
    better, worse = runs[runs.z < -Z_NOISE], runs[runs.z > Z_NOISE]
    matter = per_knob[per_knob.absz > Z_NOISE].knob.tolist()
    quiet = per_knob[per_knob.absz <= Z_NOISE].knob.tolist()
    best = runs.loc[runs.val_loss_full.idxmin()]
    gap_mu, gap_sd = bl.gap.mean(), bl.gap.std(ddof=1)
    gz = (runs.gap - gap_mu) / gap_sd
    widest = runs.loc[runs.gap.idxmax()]
    wz = (widest.gap - gap_mu) / gap_sd
    drop = runs[runs.knob == "dropout"]
    all_runs = pd.concat([runs[["params", "val_loss_full"]], bl[["params", "val_loss_full"]]])
    rho = all_runs.corr(method="spearman").iloc[0, 1]
    relation = ("more parameters, lower loss" if rho < -0.5 else "more parameters, higher loss" if rho > 0.5
                else "no clear relation")
    slow = runs.loc[runs.elapsed_s.idxmax()]

    def listing(df):
        return ", ".join(f"{r.tag} ({r.diff:+.3f}, {r.z:+.1f} std)" for r in df.itertuples()) or "none"

    lines = [
        f"- Baseline ({preset} preset): best validation loss **{mu:.4f} ± {sd:.4f}** nats/char (mean ± std over "
        f"{len(bl)} seeds). Every changed shape has **{runs.seed.nunique()} seed**, so each is judged by how many "
        f"baseline standard deviations it lies from the baseline mean (beyond {Z_NOISE:g} std: beyond seed noise).",
    ]
    if abs(top.z) > Z_NOISE:
        lines.append(f"- The knob that moved the best validation loss most is **{top.knob}**: {top.knob}={top.value:g} "
                     f"(baseline {base[top.knob]:g}) gives {top.val_loss_full:.4f}, {top['diff']:+.4f} nats "
                     f"({top.z:+.1f} std).")
    else:
        lines.append(f"- No knob moved the best validation loss beyond seed noise; the biggest move, {top.knob}'s "
                     f"{top['diff']:+.4f} nats ({top.z:+.1f} std), is within it.")
    lines.append("- Knobs ranked by their largest move: "
                 + ", ".join(f"{r.knob} ({r.z:+.1f} std)" for r in per_knob.itertuples()) + ". "
                 f"Beyond {Z_NOISE:g} baseline std: better — {listing(better)}; worse — {listing(worse)}. "
                 + (f"Knobs that matter on this data: {', '.join(matter)}" if matter
                    else "No knob matters beyond noise")
                 + (f"; within seed noise: {', '.join(quiet)}." if quiet else "."))
    lowest = (f"- The lowest best validation loss is {best.tag}'s, {best.val_loss_full:.4f} "
              f"({best['diff']:+.4f} nats, {best.z:+.1f} std from the baseline mean")
    lines.append(lowest + ("): no changed shape beats the baseline beyond seed noise." if best.z >= -Z_NOISE
                           else "), beyond seed noise."))
    if wz > Z_NOISE:
        lines.append(f"- Over-fitting: {widest.tag} ends with the largest gap (val − train), {widest.gap:+.3f} nats, "
                     f"{wz:+.1f} std above the baseline's gap ({gap_mu:+.3f} ± {gap_sd:.3f}).")
    else:
        lines.append(f"- Over-fitting: no changed shape ends with a wider gap (val − train) than the baseline's "
                     f"{gap_mu:+.3f} ± {gap_sd:.3f} nats beyond seed noise; the widest, {widest.tag}'s "
                     f"{widest.gap:+.3f}, is {wz:+.1f} std from it.")
    for r, z in zip(drop.itertuples(), gz[drop.index]):
        lines.append(f"- Dropout {r.value:g} (baseline {base['dropout']:g}) ends with a gap of {r.gap:+.3f} "
                     f"({z:+.1f} std of the baseline's gap{', narrower' if z < -Z_NOISE else ''}) and a best val loss "
                     f"{r.diff:+.4f} nats ({r.z:+.1f} std) from the baseline's: at {preset} scale there is "
                     f"{'little' if gap_mu < 0.2 else 'much'} over-fitting for dropout to remove.")
    lines.append(f"- Cost: across all runs the rank correlation between parameter count and best val loss is "
                 f"{rho:+.2f} ({relation}). The slowest run, {slow.tag}, took {slow.elapsed_s:.1f} s, "
                 f"{slow.elapsed_s / bl.elapsed_s.median():.1f}× the baseline's median, for a best val loss "
                 f"{slow['diff']:+.4f} nats ({slow.z:+.1f} std) from the baseline mean.")
    return "\n".join(lines)


def shape_table(table, knob_of, n_seeds=None):
    """(runs, bl) for shape_summary from load_runs rows of the baseline and the shape runs."""
    if n_seeds is not None:
        table = table[(table.tag != "baseline") | (table.seed < n_seeds)]
    table = table.assign(gap=table.final_val_loss - table.final_train_loss)
    bl = table[table.tag == "baseline"]
    mu, sd = bl.val_loss_full.mean(), bl.val_loss_full.std(ddof=1)
    runs = table[table.tag != "baseline"].copy()
    runs["knob"] = runs.tag.map(lambda t: knob_of[t][0])
    runs["value"] = pd.Series([knob_of[t][1] for t in runs.tag], index=runs.index, dtype=object)  # ints stay ints
    runs["diff"] = runs.val_loss_full - mu
    runs["z"] = runs["diff"] / sd
    runs = runs.set_index("tag").loc[[t for t in knob_of if t in set(runs.tag)]].reset_index()
    return runs, bl


def interval(df, diff="diff", lo="lo", hi="hi", digits=4):
    """A difference and its interval as one string per row, "−0.0060 [−0.0375, +0.0255]": tables stay narrow."""
    return [f"{d:+.{digits}f} [{a:+.{digits}f}, {b:+.{digits}f}]" for d, a, b in zip(df[diff], df[lo], df[hi])]


def comparison_table(table, metric_name="best val loss"):
    """A comparison table for display, compact enough for the column at 800 px: one string per cell, the
    baseline's difference columns as '—'."""
    rows = []
    for _, r in table.iterrows():
        has = not pd.isna(r.get("diff"))
        rows.append({"variant": r.tag, "n": r.n, metric_name: f"{r['mean']:.4f} ± {r['std']:.4f}",
                     "difference [95%]": f"{r['diff']:+.4f} [{r.ci_lo:+.4f}, {r.ci_hi:+.4f}]" if has else "—",
                     "p (Holm)": f"{r['p (Holm)']:.3f}" if has and "p (Holm)" in r else "—",
                     "verdict": r.verdict if has else "(reference)"})
    return pd.DataFrame(rows).set_index("variant")


# ----------------------------------------------------------------------------- the original study beside ours

# What the original study reported (the design notes' variants.md, from ../shared/seed.md), at nanoGPT's
# shakespeare_char configuration; and the scales of the studies. One value for the original's baseline: nanoGPT's
# README for that configuration (conclusions.ORIGINAL_BASELINE).
ORIGINAL = {
    "baseline": "1.4697 (nanoGPT's README)",
    "soft_window": "1.4571 (after 1,500 iterations, then over-fits)",
    "hard_window": "\"similar\" to the baseline",
    "key_importance": "described, not kept (\"unnecessary\")",
    "structure_gate": "no better, no worse",
    "structure_mlp": "1.51",
    "structure_embedding": "no help",
}
SCALE_ROWS = [("layers × heads, width", "6 × 6, 384"), ("context", "256 characters"),
              ("training", "5,000 iterations × 16,384 tokens ≈ 82 M tokens"), ("dropout", "0.2"),
              ("seeds", "1 per model")]


def _scale_column(cfg, table):
    m = cfg.model
    tokens = cfg.max_iters * cfg.batch_size * m.block_size
    n = table.set_index("tag").n
    n_var = sorted({int(x) for t, x in n.items() if t != "baseline"})
    return [f"{m.n_layer} × {m.n_head}, {m.n_embd}", f"{m.block_size} characters",
            f"{cfg.max_iters:,} iterations × {cfg.batch_size * m.block_size:,} tokens ≈ {tokens / 1e6:.1f} M tokens",
            f"{m.dropout:g}", f"{int(n['baseline'])} for the baseline, {'–'.join(map(str, n_var))} per variant"]


def _cell(t, tag):
    if tag not in t.index:
        return "not measured yet"
    r = t.loc[tag]
    diff = "" if pd.isna(r.get("diff")) else f" ({r['diff']:+.3f}, {r.verdict})"
    return f"{r['mean']:.3f} ± {r['std']:.3f}{diff}".replace("-", "−")


def original_vs_ours(scales):
    """Markdown table: the original's scale and reported numbers beside the book's at each scale.

    scales: {column title: (tinygpt.make_config(preset), comparison table)}, e.g. summary.json's tables.
    """
    cols = list(scales)
    lines = ["| | the original study | " + " | ".join(cols) + " |", "| --- | --- | " + " | ".join("---" for _ in cols)
             + " |"]
    ours = [_scale_column(cfg, table) for cfg, table in scales.values()]
    lines += [f"| {name} | {orig} | " + " | ".join(col[i] for col in ours) + " |"
              for i, (name, orig) in enumerate(SCALE_ROWS)]
    tables = [table.set_index("tag") for _, table in scales.values()]
    for tag, orig in ORIGINAL.items():
        label = "baseline's best val loss" if tag == "baseline" else tag
        lines.append(f"| {label} | {orig} | " + " | ".join(_cell(t, tag) for t in tables) + " |")
    return "\n".join(lines)
