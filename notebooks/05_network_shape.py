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
# # 5. The network's shape: layers, heads, width, dropout and context
#
# ## Overview
# The original study's second goal was to "vary the network shape (heads, layers, embedding size),
# the dropout, and the context size (block size)". This chapter moves each of those five knobs
# away from the preset (once, or both ways), one knob at a time, everything else as in the baseline,
# and asks three questions: which knobs move the best validation loss by more than the baseline's
# seed-to-seed noise; which ones open a gap between training and validation loss (over-fitting);
# and what each change costs in parameters and training time. The baseline seeds are the ones
# chapter 1 trained; they are re-used, not retrained.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import plots, study
from tinygpt.book.experiments import ensure_runs
from tinygpt.book.notebook import environment
from tinygpt.book.results import load_histories, load_runs


# Helpers this chapter needs that tinygpt does not have yet (candidates for tinygpt.book.plots).
def train_val_curves(hist, tag, ax, title=None):
    """Training and validation loss of one tag against iteration: mean over seeds, min–max band."""
    g = hist[hist.tag == tag].groupby("iter")
    for split, colour in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
        m = g[split].mean()
        ax.plot(m.index, m.values, color=colour, label=split.replace("_", " "))
        ax.fill_between(m.index, g[split].min().values, g[split].max().values, color=colour, alpha=0.2)
    ax.set(xlabel="iteration", ylabel="loss (nats/char)", title=title or tag)
    ax.legend(fontsize="small")
    return ax


def knob_effect(ax, base_value, base_losses, values, losses, xlabel, title="", log=True):
    """Best val loss against one knob's value: baseline seeds (mean ± std, band ±2 std) and one run per value."""
    mu, sd = np.mean(base_losses), np.std(base_losses, ddof=1)
    ax.axhspan(mu - 2 * sd, mu + 2 * sd, color="gray", alpha=0.15, label="baseline ± 2 std")
    ax.scatter([base_value] * len(base_losses), base_losses, color="gray", s=12, label="baseline seeds")
    ax.errorbar(base_value, mu, yerr=sd, fmt="s", color="k", capsize=4, label="baseline mean ± std")
    xs = sorted([*values, base_value])
    ys = [mu if x == base_value else losses[values.index(x)] for x in xs]
    ax.plot(xs, ys, color="tab:blue", lw=1, alpha=0.6)
    ax.scatter(values, losses, color="tab:blue", s=40, zorder=3, label="changed run (1 seed)")
    if log:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel="best val loss (nats/char)", title=title)
    return ax


environment()
plots.setup()

# %% tags=["parameters"]
preset = "cpu"  # smoke (seconds, for tests), cpu (nanoGPT's CPU config) or gpu (nanoGPT's shakespeare_char config)
n_seeds = 5  # baseline seeds (chapter 1's runs, re-used): the noise each shape change is judged against; ≥ 2
out_dir = ""  # results folder; "" means the repository's results/
device = "auto"  # auto (cuda if available), cpu or cuda
retrain = False  # True trains again even where finished runs exist
jobs = 1  # training runs in parallel (separate processes)
both_ways = False  # move each knob both ways (ten runs) instead of once (five): twice the training time

# %%
study.check_parameters(preset, n_seeds=n_seeds, device=device)
if n_seeds < 2:
    raise ValueError(f"parameter n_seeds must be ≥ 2 here: the baseline's spread is the yardstick (got {n_seeds})")
root = out_dir or None
cfg = tinygpt.make_config(preset)
m = cfg.model
print(f"preset {preset!r}: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} embedding, context {m.block_size}, "
      f"batch {cfg.batch_size}, {cfg.max_iters} iterations, dropout {m.dropout}")

# %% [markdown]
# ## The runs
# `study.shape_runs` moves one knob at a time: by default layers ×1.5, heads ×2, width ×½, dropout
# to 0.1 (or halved) and context ×½; with `both_ways=True` each knob also moves the other way (layers
# ×½, heads ×½, width ×2, more dropout, context ×2). Each changed shape is trained with **one seed**
# (seed 0); the baseline has `n_seeds`. The batch size counts sequences, so a longer context also means more tokens per
# iteration, and its validation loss is averaged over positions that see more history.

# %%
KNOBS = {"n_layer": "layers", "n_head": "heads", "n_embd": "dimensions", "dropout": "probability",
         "block_size": "tokens"}
planned = study.chapter_runs("05_network_shape", dict(preset=preset, n_seeds=n_seeds, both_ways=both_ways))
shape = [r for r in planned if r.name != "baseline"]
knob_of = {r.tag: next(iter(r.overrides.items())) for r in shape}  # tag → (knob, value)
base = {k: getattr(cfg.model, k) for k in KNOBS}
for knob in KNOBS:
    print(f"{knob:>10}: baseline {base[knob]:g}, tried {[v for k, v in knob_of.values() if k == knob]}")
dirs = ensure_runs(planned, jobs=jobs, retrain=retrain, root=root, device=device)

# %% [markdown]
# ## Best validation loss, knob by knob
# Each changed run is set against the baseline seeds: `diff` is its best validation loss minus the
# baseline mean, `z` the same difference in baseline standard deviations. With one seed per changed
# run, |z| ≲ 2 cannot be told apart from seed noise. `gap` is the final validation minus the final
# training loss (over-fitting).

# %%
table = load_runs(preset, root, tags=["baseline", *knob_of])
table = table[(table.tag != "baseline") | (table.seed < n_seeds)]
table["gap"] = table.final_val_loss - table.final_train_loss
bl = table[table.tag == "baseline"]
mu, sd = bl.val_loss_full.mean(), bl.val_loss_full.std(ddof=1)
runs = table[table.tag != "baseline"].copy()
runs["knob"] = runs.tag.map(lambda t: knob_of[t][0])
runs["value"] = pd.Series([knob_of[t][1] for t in runs.tag], index=runs.index, dtype=object)  # ints stay ints
runs["diff"] = runs.val_loss_full - mu
runs["z"] = runs["diff"] / sd
runs = runs.set_index("tag").loc[list(knob_of)].reset_index()  # the design's order
print(f"baseline: best val loss {mu:.4f} ± {sd:.4f} nats/char (mean ± std, {len(bl)} seeds); "
      f"gap {bl.gap.mean():+.4f}; {bl.params.iloc[0]:,} parameters")
runs[["knob", "value", "seed", "val_loss_full", "diff", "z", "best_iter", "gap", "params", "elapsed_s"]].round(4)

# %% [markdown]
# Each panel is one knob: the baseline seeds (grey dots, mean ± std in black) at the preset's value
# and the two changed runs (blue). A blue point outside the grey band (baseline mean ± 2 std) moved
# the loss by more than seed noise plausibly can; lower is better.

# %%
fig, axes = plt.subplots(1, len(KNOBS), figsize=(3.4 * len(KNOBS), 3.8), sharey=True)
for ax, (knob, unit) in zip(axes, KNOBS.items()):
    r = runs[runs.knob == knob]
    knob_effect(ax, base[knob], bl.val_loss_full.to_numpy(), r.value.tolist(), r.val_loss_full.tolist(),
                f"{knob} ({unit})", title=knob, log=knob != "dropout")
    if ax is not axes[0]:
        ax.set_ylabel("")
axes[0].legend(fontsize="x-small", loc="best")
fig.suptitle(f"best validation loss when one knob moves ({preset} preset)")
plt.show()

# %% [markdown]
# ## Over-fitting
# Training and validation loss against iteration for the baseline, the wider and the deeper network,
# the dropout runs, and whichever run ends with the largest gap. Where the orange curve lifts away
# above the blue one the network is learning the training text rather than the language; dropout is
# the knob meant to close that gap.

# %%
up = {k: runs[(runs.knob == k) & (runs.value > base[k])].tag.tolist() for k in KNOBS}
shown = ["baseline", *up["n_embd"], *up["n_layer"], *runs[runs.knob == "dropout"].tag]
widest = runs.loc[runs.gap.idxmax(), "tag"]
shown += [widest] if widest not in shown else []
hist = load_histories(table.path)
ncols = 3
nrows = -(-len(shown) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), sharey=True, squeeze=False)
gaps = table.groupby("tag").gap.mean()
for ax, tag in zip(axes.flat, shown):
    n = hist[hist.tag == tag].seed.nunique()
    train_val_curves(hist, tag, ax, f"{tag} (n={n}): final gap {gaps[tag]:+.3f}")
for ax in axes.flat[len(shown):]:
    ax.set_visible(False)
fig.suptitle(f"training vs validation loss ({preset} preset); gap = final val − final train loss (nats/char)")
plt.show()

# %% [markdown]
# ## What each shape costs
# Best validation loss against the parameter count (left; position embeddings excluded, as nanoGPT
# counts them) and against the training time of the run (right). Points down and to the left are
# cheap and good. Heads, dropout and context leave the parameter count unchanged, so those runs
# stack above the baseline's count. Times are wall-clock on a machine that may have been shared
# with other jobs, so read them as rough.

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), sharey=True)
colours = dict(zip(KNOBS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
pts = runs.sort_values("val_loss_full").reset_index(drop=True)
pts["marker"] = ["^" if v > base[k] else "v" for k, v in zip(pts.knob, pts.value)]
for ax, (col, xlabel) in zip(axes, [("params", "parameters (count, log scale)"),
                                    ("elapsed_s", "training time per run (s)")]):
    ax.scatter(bl[col], bl.val_loss_full, color="gray", marker="s", s=25, label="baseline seeds")
    for i, row in pts.iterrows():  # label sides alternate down the loss axis so neighbours do not collide
        ax.scatter(row[col], row.val_loss_full, color=colours[row.knob], marker=row.marker, s=50, zorder=3)
        ax.annotate(f"{row.value:g}", (row[col], row.val_loss_full), fontsize=8, va="center",
                    xytext=(-7 if i % 2 else 7, 0), textcoords="offset points", ha="right" if i % 2 else "left",
                    color=colours[row.knob])
    ax.set(xlabel=xlabel, ylabel="best val loss (nats/char)")
handles = [plt.Line2D([], [], color="gray", marker="s", ls="", label="baseline seeds")]
handles += [plt.Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in colours.items()]
handles += [plt.Line2D([], [], color="k", marker=m, ls="", label=f"knob {w} (label: value)")
            for m, w in (("^", "raised"), ("v", "lowered"))]
axes[0].set_xscale("log")
axes[0].set_title("best val loss vs parameter count")
axes[1].set(ylabel="", title="best val loss vs training time")
axes[1].legend(handles=handles, fontsize="small", title="knob changed", title_fontsize="small", loc="upper left",
               bbox_to_anchor=(1.01, 1))
fig.suptitle(f"cost of each shape ({preset} preset)")
plt.show()

# %% [markdown]
# ## Summary

# %%
effect = runs.assign(absz=runs.z.abs()).sort_values("absz", ascending=False)
per_knob = effect.drop_duplicates("knob")  # each knob's largest move
top = per_knob.iloc[0]
better, worse = runs[runs.z < -2], runs[runs.z > 2]
matter = per_knob[per_knob.absz > 2].knob.tolist()
quiet = per_knob[per_knob.absz <= 2].knob.tolist()
best = runs.loc[runs.val_loss_full.idxmin()]
drop = runs[runs.knob == "dropout"]
rho = table[["params", "val_loss_full"]].corr(method="spearman").iloc[0, 1]
relation = ("more parameters, lower loss" if rho < -0.5 else "more parameters, higher loss" if rho > 0.5
            else "no clear relation")
slow = runs.loc[runs.elapsed_s.idxmax()]


def gz(gap):  # a final gap in standard deviations of the baseline seeds' gaps
    return (gap - bl.gap.mean()) / bl.gap.std()


def listing(df):
    return ", ".join(f"{r.tag} ({r.diff:+.3f}, {r.z:+.1f} std)" for r in df.itertuples()) or "none"


display(Markdown(
    f"- Baseline ({preset} preset): best validation loss **{mu:.4f} ± {sd:.4f}** nats/char (mean ± std over "
    f"{len(bl)} seeds). Every changed shape has **{runs.seed.nunique()} seed**, so each is judged by how many "
    f"baseline standard deviations it lies from the baseline mean.\n"
    f"- The knob that moved the best validation loss most is **{top.knob}**: {top.knob}={top.value:g} "
    f"(baseline {base[top.knob]:g}) gives {top.val_loss_full:.4f}, {top['diff']:+.4f} nats ({top.z:+.1f} std). "
    f"Knobs ranked by their largest move: "
    f"{', '.join(f'{r.knob} ({r.z:+.1f} std)' for r in per_knob.itertuples())}.\n"
    f"- Beyond 2 baseline std: better — {listing(better)}; worse — {listing(worse)}. "
    f"{'Knobs that matter on this data: ' + ', '.join(matter) if matter else 'No knob moved the loss beyond 2 std'}"
    f"{'; within seed noise: ' + ', '.join(quiet) if quiet else ''}.\n"
    f"- The lowest best validation loss is **{best.tag}** at {best.val_loss_full:.4f} "
    f"({'below' if best['diff'] < 0 else 'above'} the baseline mean by {abs(best['diff']):.4f} nats).\n"
    f"- Over-fitting: the largest final gap (val − train) is {widest}'s, {gaps[widest]:+.3f} nats "
    f"({gz(gaps[widest]):+.1f} std of the baseline's gap, which is {bl.gap.mean():+.3f} ± {bl.gap.std():.3f}). "
    + " ".join(f"Dropout {r.value:g} (baseline {base['dropout']:g}) ends with a gap of {r.gap:+.3f} "
               f"({gz(r.gap):+.1f} std) and a best val loss {r.diff:+.4f} nats ({r.z:+.1f} std) from the baseline's."
               for r in drop.itertuples())
    + "\n"
    f"- Cost: across all runs the rank correlation between parameter count and best val loss is {rho:+.2f} "
    f"({relation}). "
    f"The slowest run, {slow.tag}, took {slow.elapsed_s:.1f} s, {slow.elapsed_s / bl.elapsed_s.median():.1f}× the "
    f"baseline's median, for a best val loss {slow['diff']:+.4f} nats from the baseline mean."
))
