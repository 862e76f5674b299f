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

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import plots, prose, study
from tinygpt.book.experiments import ensure_runs
from tinygpt.book.notebook import environment
from tinygpt.book.results import load_histories, load_runs

environment()
plots.setup()

# %% [markdown]
# ## Parameters
# The cell below is what papermill and `tinygpt book run --set` change. What each preset costs, on a 2-core CPU:
# - `smoke`: a 2-layer model for a few dozen steps, seconds; its figures mean nothing.
# - `cpu` (the default, what this site shows): this chapter trains 5 changed shapes, one seed each, 1–3.5 min
#   each (≈ 11 min with `jobs=1`; twice that with `both_ways=True`), and re-uses chapter 1's baseline. It reads
#   only losses, so a fresh clone re-uses the committed results (`results/cpu/`) and trains nothing.
# - `gpu`: nanoGPT's own configuration, hours on a CPU; minutes per run on a GPU.
#
# To experiment without touching the repository, run `make lab` (see the README): it opens copies of
# these notebooks, and writes any training into `work/results/`.

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
print(f"preset {preset!r}: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} embedding, context {m.block_size},")
print(f"  batch {cfg.batch_size}, {cfg.max_iters} iterations, dropout {m.dropout}")

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
runs, bl = prose.shape_table(table, knob_of, n_seeds)  # diff and z against the baseline seeds, in the design's order
table = table[(table.tag != "baseline") | (table.seed < n_seeds)].assign(
    gap=lambda t: t.final_val_loss - t.final_train_loss)
mu, sd = bl.val_loss_full.mean(), bl.val_loss_full.std(ddof=1)
print(f"baseline: best val loss {mu:.4f} ± {sd:.4f} nats/char (mean ± std, {len(bl)} seeds); "
      f"gap {bl.gap.mean():+.4f}; {bl.params.iloc[0]:,} parameters")
runs.set_index("tag")[["val_loss_full", "diff", "z", "best_iter", "gap", "params", "elapsed_s"]].round(4)

# %% [markdown]
# Figure 5.1 has one panel per knob: the baseline seeds (grey dots, mean ± std in dark grey) at the
# preset's value and the changed run of that knob (blue; two with `both_ways=True`). A blue point outside the
# grey band (baseline mean ± 2 std) moved the loss by more than seed noise plausibly can; lower is better.

# %% tags=["hide-input"]
plots.knob_grid(KNOBS, base, bl.val_loss_full.to_numpy(), runs, preset=preset)
plt.show()

# %% [markdown]
# **Figure 5.1.** Best validation loss against each knob's value (log scale except dropout), one knob per
# panel: the baseline's seeds at the preset's value, with the band of ± 2 baseline standard deviations, and
# each changed shape's single run.

# %% [markdown]
# ## Over-fitting
# Training and validation loss against iteration (Figure 5.2) for the baseline, every shape whose
# parameter count changed (the width and the depth), the dropout runs, and whichever run ends with the
# widest gap. Where the solid validation curve lifts away above the dashed training curve, the network is
# learning the training text rather than the language; dropout is the knob meant to close that gap.

# %% tags=["hide-input"]
resized = runs[runs.knob.isin(["n_embd", "n_layer"])].tag.tolist()
shown = ["baseline", *resized, *runs[runs.knob == "dropout"].tag]
widest = runs.loc[runs.gap.idxmax(), "tag"]
shown += [widest] if widest not in shown else []
hist = load_histories(table.path)
ncols = 2
nrows = -(-len(shown) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(8.2, 2.9 * nrows + 0.6), sharey=True, squeeze=False)
gaps = table.groupby("tag").gap.mean()
for ax, tag in zip(axes.flat, shown):
    n = hist[hist.tag == tag].seed.nunique()
    plots.train_val_curves(hist, tag, ax, f"{tag.removeprefix('shape-')} (n={n})\nfinal gap {gaps[tag]:+.3f}")
    ax.title.set_fontsize("medium")
for ax in axes.flat[len(shown):]:
    ax.set_visible(False)
for ax in axes[:, 1:].flat:
    ax.set_ylabel("")
fig.suptitle(f"training vs validation loss ({preset} preset); gap = final val − final train loss (nats/char)")
plots.figure_legend(fig, axes, ncols=2)
plt.show()

# %% [markdown]
# **Figure 5.2.** Training (dashed) and validation (solid) loss against iteration, mean over seeds with their
# range, for the baseline and the shapes most likely to over-fit; each title gives the final gap.

# %% [markdown]
# ## What each shape costs
# Best validation loss against the parameter count (top; position embeddings excluded, as nanoGPT
# counts them) and against the training time of the run (bottom). Points down and to the left are
# cheap and good. Heads, dropout and context leave the parameter count unchanged, so those runs
# stack above the baseline's count. Times are wall-clock on a machine that may have been shared
# with other jobs, so read them as rough (Figure 5.3).

# %% tags=["hide-input"]
import seaborn as sns

colours = dict(zip(KNOBS, sns.color_palette("dark", len(KNOBS))))  # knobs, not variants: a palette of their own
plots.cost_scatter(runs, bl, base, colours, preset)
plt.show()

# %% [markdown]
# **Figure 5.3.** Best validation loss against the parameter count (top) and the training time (bottom) of
# every run: the baseline's seeds (grey squares) and each changed shape (colour: the knob; ▲ raised,
# ▼ lowered; label: its value).

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(prose.shape_summary(runs, bl, base, preset)))
