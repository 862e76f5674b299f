# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -papermill,-jupyter
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Conclusions
#
# ## Overview
# What the book found, read from the summary that chapter 6 writes (`results/<preset>/summary.json`):
# one verdict per variant, one per variant and training regime, and one per hypothesis, each with
# the figure that shows it, then a discussion. Nothing here is trained; every number is read from
# that file. Run chapter 6 first.

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import plots, prose, study
from tinygpt.book.experiments import results_root
from tinygpt.book.notebook import environment
from tinygpt.checkpoint import read_json

environment()
plots.setup()

# %% [markdown]
# ## Parameters
# This page trains nothing: it reads `results/<preset>/summary.json`, which chapter 6 writes, and takes
# seconds at any preset.

# %% tags=["parameters"]
preset = "cpu"  # the preset whose results to summarise: smoke, cpu or gpu
out_dir = ""  # results folder; "" means the repository's results/

# %% tags=["hide-input"]
study.check_parameters(preset)
path = results_root(out_dir or None) / preset / "summary.json"
if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: execute chapter 6 at preset {preset!r} first "
                            f"(tinygpt book run --preset {preset})")
s = read_json(path)
table = pd.DataFrame(s["table"])

# %% [markdown]
# ## The two studies side by side
# The original's reported numbers (`../shared/design/variants.md`) beside this book's at the preset above,
# with the differences of scale.

# %% tags=["hide-input"]
display(Markdown(prose.original_vs_ours(table, tinygpt.make_config(s["preset"]),
                                        int(table.loc[table.tag == "baseline", "n"].iloc[0]),
                                        int(table[table.tag != "baseline"].n.min()))))

# %% [markdown]
# ## Did any variant beat the baseline?
# Difference of each variant's best validation loss to the baseline's, with its 95% Welch interval
# (chapter 6, section 1).

# %% tags=["hide-input"]
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7.6, 0.45 * len(table) + 1.8))
plots.differences(table, ax, width=s["match_width"])
plt.show()
plots.caption("7.1", "Each variant's best validation loss minus the baseline's at the preset's budget, with its 95% "
              "Welch interval.")
counts = table.verdict.value_counts().to_dict()
better = table[table.verdict == "better"].tag.tolist()
display(Markdown(
    f"At the **{s['preset']}** preset, of {table.verdict.notna().sum()} variants and controls: "
    + ", ".join(f"**{n} {k}**" for k, n in counts.items())
    + (f". Better than the baseline: {', '.join(better)}." if better else ". None is better than the baseline.")
))

# %% [markdown]
# ## Hypothesis 3: the regime — a verdict per variant and budget
# Each cell is the verdict of section 1's rule for that variant against the baseline trained with the
# same budget (× the preset's iterations) or context; the figure shows the differences.

# %% tags=["hide-input"]
h3 = s.get("h3", {})
pts = pd.DataFrame(h3.get("points", []))
ctx = pd.DataFrame(h3.get("context", []))
if len(pts):
    grid = pts.pivot(index="variant", columns="budget", values="verdict")
    grid.columns = [f"{b:g}× budget" for b in grid.columns]
    if len(ctx):
        cgrid = ctx.pivot(index="variant", columns="block_size", values="verdict")
        cgrid.columns = [f"context {c}" for c in cgrid.columns]
        grid = grid.join(cgrid)
    display(grid.fillna("—"))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (v, g) in enumerate(pts.groupby("variant")):
        g = g.sort_values("tokens")
        ax.errorbar(g.tokens * 1.05 ** (i - 1), g["diff"], yerr=[g["diff"] - g.lo, g.hi - g["diff"]], capsize=3,
                    label=v, **plots.style(v))
    ax.axhline(0, color="k", lw=1)
    ax.axvline(h3["original_tokens"], color="gray", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="tokens seen in training (log₂; dashed: the original's)", ylabel="val loss − baseline's (nats/char)",
           title="the variants' advantage against the training budget (95% Welch)")
    plots.legend_beside(ax)
    plt.show()
    plots.caption("7.2", "The recency-biased variants minus the baseline of the same budget, against tokens seen "
                  "(95% Welch; dashed: the original study's budget).")
fits = h3.get("fits", {})
display(Markdown(
    f"**{h3.get('verdict', 'not run').upper()}.** "
    + (" ".join(f"{v}: {f['slope']:+.4f} nats per doubling of tokens seen "
                f"[{f['slope_lo']:+.4f}, {f['slope_hi']:+.4f}], "
                f"extrapolated to the original's {h3['original_tokens'] / 1e6:.0f} M tokens {f['pred']:+.3f} "
                f"[{f['pred_lo']:+.3f}, {f['pred_hi']:+.3f}] ({f['h3']})." for v, f in fits.items())
       or "No variant has two finished budgets yet.")
    + " Rule: supported for a variant better at the preset's budget whose gap closes significantly as the budget "
      "doubles; refuted where the slope's interval lies at or below 0."))
change = pd.DataFrame(h3.get("context_change", []))
if len(change):
    display(Markdown(
        f"**Context.** With the same budget and tokens per iteration, the baseline reaches "
        f"{change.base_short.iloc[0]:.3f} at context {change.short.iloc[0]} and {change.base_long.iloc[0]:.3f} at "
        f"{change.long.iloc[0]}. Each variant's gap at the longer context minus its gap at the shorter one (95%): "
        + "; ".join(f"{r.variant} {r.change:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]" for r in change.itertuples()) + "."))

# %% [markdown]
# ## Hypothesis 1: the residual stream already carries the information — figure: probe R² per layer

# %% tags=["hide-input"]
h1 = s["h1"]
plots.probe_r2(pd.DataFrame(h1["per_layer"]))
plt.show()
display(Markdown(
    f"**From the probes: {h1['verdict'].upper()}.** Mean held-out R² of the attention structure from the residual "
    f"stream with the query position {h1['structure']['resid+position']:.2f} (position alone "
    f"{h1['structure']['position']:.2f}, token and position {h1['structure'].get('token+position', float('nan')):.2f}, "
    f"a random model's stream {h1['structure'].get('random init', float('nan')):.2f}, shuffled "
    f"{h1['structure']['shuffled']:.2f}); of the learned log spans {h1['spans']['resid+position']:.2f} "
    f"(position alone {h1['spans']['position']:.2f}). Rule: supported if R² ≥ 0.5 for both and above the "
    f"controls; refuted if below 0.25 for either. **By regime**, where a variant that injects the information is "
    "better, the hypothesis is contradicted there: "
    + "; ".join(f"{b}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for b, d in h1.get("by_regime", {}).items())
    + "."
))

# %% [markdown]
# ## Hypothesis 2: the data are too small — figure: difference against data size

# %% tags=["hide-input"]
h2 = s["h2"]
fig, ax = plt.subplots(figsize=(8, 4))
plots.data_size(pd.DataFrame(h2["points"]), ax)
plt.show()
display(Markdown(
    f"**{h2['verdict'].upper()}.** Slope of the difference to the baseline per doubling of training text: "
    + "; ".join(f"{v} {d['slope']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] nats" for v, d in h2["slopes"].items())
    + ". Rule: supported if a slope is significantly negative; refuted if every interval excludes a benefit "
    "larger than 0.005 nats per doubling."
))

# %% [markdown]
# ## The odd results

# %% tags=["hide-input"]
ab = s["ablations"]
mlp = ab["structure_mlp"]
gates = pd.DataFrame(ab["gates"]).set_index("variant")
spans = pd.DataFrame(ab["spans"])
display(Markdown(
    f"- structure_mlp (post-norm, as the original) is {mlp['structure_mlp']['diff']:+.4f} nats from the baseline; "
    f"with the baseline's pre-norm placement {mlp['structure_mlp_prenorm']['diff']:+.4f}.\n"
    f"- Gates: structure_gate spans {gates.loc['structure_gate', 'min']:.2f}–{gates.loc['structure_gate', 'max']:.2f}, "
    f"output_gate {gates.loc['output_gate', 'min']:.2f}–{gates.loc['output_gate', 'max']:.2f}.\n"
    f"- Hard-window spans against the baseline's nearest look-back, Spearman ρ per layer: "
    + ", ".join(f"{r:+.2f}" for r in spans["spearman rho"]) + "."
))

# %% [markdown]
# ## Discussion
# The original study asked why none of its attention modifications beat nanoGPT's baseline, and
# offered two guesses: the information is already in the residual stream, or the data are too
# small. This book set out to reproduce the null result at a scale a laptop can train, and the
# first thing it found (the table at the top) is that the null result does not hold there: the
# mechanisms that bias attention towards recent tokens — the query-dependent soft and hard
# windows, ALiBi's fixed distance penalty — and the learned key importance reach a lower validation
# loss than the baseline, while the structure variants, which feed statistics of the attention back
# into the network, do not.
#
# Neither guess explains that split on its own. A probe that reads a quantity from the residual
# stream shows the information is *there*, not that the network uses it, so the probe verdict is
# read together with the losses, regime by regime. And "more data" changes two things at once: the
# amount of text, and how many times each character is seen in a fixed number of steps. The regime
# experiment (chapter 6, section 2) varies the second alone.

# %% tags=["hide-input"]
better_1x = table[table.verdict == "better"].tag.tolist()
closing = [v for v, f in fits.items() if f["h3"] == "supported"]
open_ = [v for v, f in fits.items() if f["h3"] == "refuted"]
crossing = {v: f["zero_tokens"] for v, f in fits.items() if f.get("zero_tokens")}
last_budget = max((p["budget"] for p in h3.get("points", [])), default=1)
last = {p["variant"]: p for p in h3.get("points", []) if p["budget"] == last_budget}
lines = []
if fits:
    lines.append(
        f"Trained for up to {last_budget:g}× the preset's iterations, "
        + (f"the gap to the baseline closes significantly as the budget doubles for {', '.join(closing)}"
           if closing else "no variant's gap closes significantly as the budget doubles")
        + (f", and does not close for {', '.join(open_)}" if open_ else "") + ". "
        + "At the longest budget the differences are "
        + ", ".join(f"{v} {p['diff']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}] ({p['verdict']})" for v, p in last.items())
        + ".")
    within = [v for v, f in fits.items() if not f.get("zero_tokens") and f["slope"] > 0]
    if within:
        lines.append(f"For {', '.join(within)} the fitted line already reaches zero within the budgets run.")
    if crossing:
        lines.append("Carried beyond the data, the fitted trend reaches zero at about "
                     + ", ".join(f"{t / 1e6:.0f} M tokens for {v}" for v, t in crossing.items())
                     + f", against the original's {h3['original_tokens'] / 1e6:.0f} M: "
                     + ("below it, consistent with the original seeing no effect at its scale."
                        if all(t <= h3["original_tokens"] for t in crossing.values()) else
                        "not all of them before it, so the trend alone does not explain the original's null result."))
    lines.append("The extrapolation spans several doublings beyond the longest budget and a change of width, "
                 "context and dropout; it states a direction, not a value.")
    if len(change):
        wider = change[change.hi < 0].variant.tolist()
        lines.append(
            f"The context cuts the other way. At context {change.long.iloc[0]}, with the same budget and tokens per "
            f"iteration, the baseline's loss is {change.base_long.iloc[0] - change.base_short.iloc[0]:+.3f} nats "
            f"from its loss at context {change.short.iloc[0]}, and "
            + (f"the advantage of {', '.join(wider)} is significantly larger there (by "
               + ", ".join(f"{-r.change:.3f}" for r in change.itertuples() if r.variant in wider) + " nats): "
               "a recency prior is worth more when there are more distant positions to learn to ignore. "
               "The original trained at that context, so its context does not explain its null result; what "
               "remains is its far longer training and its larger, regularised network."
               if wider else "no variant's gap changes significantly there."))
else:
    lines.append("The regime runs have not finished for two budgets of any variant yet; the verdict on the regime "
                 "waits for them.")
lines.append(
    "So the answer this book gives to *when do the variants match the baseline?* is: "
    + ("**not early in training** — " + ", ".join(better_1x) + " are ahead after the preset's budget — "
       if better_1x else "")
    + ("**and they converge as the baseline trains longer**, which is what a recency prior that the baseline "
       "learns by itself predicts" + ("." if len(closing) == len(fits) else
                                      f" (significantly for {', '.join(closing)}; for "
                                      f"{', '.join(v for v in fits if v not in closing)} the slope's interval "
                                      "still includes 0).") if closing and not open_ else
       "**and whether they converge with training is not settled by the budgets run so far**." if not closing else
       "**and only some of them converge with training** (the verdict table says which)."))
lines.append("The direct test is the same comparison at the original's scale (the gpu preset), which the book is "
             "prepared to run (docs/gpu.md).")
display(Markdown("\n\n".join(lines)))
