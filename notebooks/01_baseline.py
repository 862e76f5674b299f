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
# # 1. The baseline: nanoGPT's character model on tiny Shakespeare
#
# ## Overview
# Every later chapter changes the attention of one model and asks whether the change helps. This
# chapter fixes what "helps" is measured against: nanoGPT's `shakespeare_char` model, trained with
# several seeds. We look at the data, the training curves, samples, attention maps, how far and
# how widely each head looks back (the *attention structure* that chapters 3 and 4 feed back into
# the network), and the seed-to-seed noise that every comparison has to beat.

# %% tags=["hide-input"]
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import analysis, plots, study, widgets
from tinygpt.book.experiments import ensure_runs, load_run_model
from tinygpt.book.notebook import environment
from tinygpt.book.results import compare, load_histories, load_runs
from tinygpt.data import load_dataset

environment()
plots.setup()

# %% [markdown]
# ## Parameters
# The cell below is what papermill and `tinygpt book run --set` change. What each preset costs, on a 2-core CPU:
# - `smoke`: a 2-layer model for a few dozen steps, seconds per chapter; its figures mean nothing.
# - `cpu` (the default, what this site shows): this chapter trains 5 baseline runs of about 2.5 min each
#   (≈ 13 min with `jobs=1`). The repository keeps each run's losses (`results/cpu/`) but not its
#   checkpoints; this chapter's samples and attention maps read seed 0's model, so **a fresh clone retrains
#   seed 0** (≈ 2.5 min) and re-uses the other seeds' losses. The whole book's training at cpu took 55 min with two
#   jobs (`results/cpu/book_run.json`).
# - `gpu`: nanoGPT's own configuration, hours on a CPU; minutes per run on a GPU.
#
# To experiment without touching the repository, run `make lab` (see the README): it opens copies of
# these notebooks, and writes any training into `work/results/`.

# %% tags=["parameters"]
preset = "cpu"  # smoke (seconds, for tests), cpu (nanoGPT's CPU config) or gpu (nanoGPT's shakespeare_char config)
n_seeds = 5  # baseline seeds: the noise floor every later chapter is measured against
out_dir = ""  # results folder; "" means the repository's results/
device = "auto"  # auto (cuda if available), cpu or cuda
retrain = False  # True trains again even where finished runs exist
jobs = 1  # training runs in parallel (separate processes)

# %%
study.check_parameters(preset, n_seeds=n_seeds, device=device)
root = out_dir or None
cfg = tinygpt.make_config(preset)
m = cfg.model
print(f"preset {preset!r}: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} embedding, context {m.block_size},")
print(f"  batch {cfg.batch_size}, {cfg.max_iters} iterations, dropout {m.dropout}")

# %% [markdown]
# ## The data
# Tiny Shakespeare: about a million characters of the plays, encoded one character per token. The
# first 90% is the training split, the last 10% the validation split.

# %%
data = load_dataset("shakespeare_char")
print(f"vocabulary: {data.vocab_size} characters: {''.join(data.itos)!r}")
print(f"train {data.train_tokens:,} tokens, val {data.val_tokens:,} tokens")
print("--- the first 300 characters of the validation split ---")
print(data.decode(data.tokens("val")[:300]))

# %% [markdown]
# ## Training the baseline
# `ensure_runs` trains each seed unless a finished run with the same configuration exists in the
# results folder (set `retrain=True` to train again). Each run keeps `history.json` (every
# evaluation), `metrics.json` and its checkpoints. As in nanoGPT, the best checkpoint is the one with
# the lowest periodic validation estimate (`best_val_loss`, from `eval_iters` random batches); that
# estimate carries sampling noise, so every comparison in this book uses the best checkpoint's loss on
# the *whole* validation split (`val_loss_full`), called "best val loss" from here on.

# %%
runs = study.chapter_runs("01_baseline", dict(preset=preset, n_seeds=n_seeds))
dirs = ensure_runs(runs, jobs=jobs, retrain=retrain, root=root, need_model=True, device=device)
table = load_runs(preset, root, tags=["baseline"])
table.set_index("seed")[["best_val_loss", "val_loss_full", "best_iter", "final_train_loss", "elapsed_s"]].round(4)

# %% [markdown]
# Figure 1.1 shows the training and validation loss over the run in one panel, mean over seeds with the
# min–max band. Validation above training is the generalisation gap; a validation curve that turns up
# while the training curve keeps falling is over-fitting. At the cpu preset (no dropout, 2,000
# iterations) the gap stays small; at the original's scale it does not (the same chapter at the gpu preset).

# %% tags=["hide-input"]
import matplotlib.pyplot as plt

hist = load_histories(dirs)
n = hist.seed.nunique()
fig, ax = plt.subplots(figsize=(6.8, 3.4))
plots.train_val_curves(hist.assign(tag="baseline"), "baseline", ax, title=f"the baseline's loss ({n} seeds)")
plt.show()

# %% [markdown]
# **Figure 1.1.** The baseline's training (dashed) and validation (solid) loss against iteration: mean over
# seeds (line) and the range of the seeds (band). Both are the periodic estimates from a few random batches.

# %% [markdown]
# ## Samples
# Text generated by seed 0's best checkpoint (temperature 0.8). In JupyterLab the box below it takes
# a prompt, a temperature and a top-k.

# %%
model = load_run_model(dirs[0], "cpu")
controls = widgets.sampling_box(model, data.itos, prompt="ROMEO:", max_new_tokens=300)

# %% [markdown]
# ## Attention maps
# The weights of the first, a middle and the last layer on a stretch of validation text. Rows are
# queries, columns keys; everything above the diagonal is masked (causal).

# %%
idx = analysis.val_batch(data, cfg.model.block_size, batch=8)
cap = tinygpt.capture(model, idx)
L, H = cfg.model.n_layer, cfg.model.n_head
layers = sorted({0, L // 2, L - 1})
fig = plots.attention_grid(cap, layers, list(range(min(H, 4))), suptitle="baseline attention weights (seed 0)")
plt.show()

# %% [markdown]
# **Figure 1.2.** Attention weights of the first, a middle and the last layer (rows) and of up to four
# heads (columns), on one sequence of validation text; one colour scale for all panels. A bright
# diagonal is a head that looks at the current or previous character.

# %% [markdown]
# An explorer: pick a layer, a head and a query position to see that query's weights and its
# structure. The rendered book shows the static rows (Figure 1.3) above the sliders.

# %%
text = data.decode(idx[0])
widgets.attention_explorer(model, text, data.itos, static_points=((0, 0), (L - 1, 0)))

# %% [markdown]
# **Figure 1.3.** The last query's attention over the keys before it, for head 0 of the first and of the last
# layer, with how far back (mean ± spread, in tokens) it looks.

# %% [markdown]
# ## The baseline's attention structure
# For each head: how far back it looks on average (`mean_distance`, tokens), how widely
# (`std_distance`, tokens) and how strongly it fires (`mean_logit`), over the queries in the second
# half of the context (where a head could look back at least half a context). These are the
# quantities the structure variants compute explicitly (Figure 1.4).

# %%
half = cfg.model.block_size // 2
panels = [(analysis.per_head(cap, field, half), f"{field.replace('_', ' ')} per head", unit)
          for field, unit in [("mean_distance", "tokens"), ("std_distance", "tokens"), ("mean_logit", "logit")]]
plots.per_head_grid(panels, suptitle="the baseline's attention structure (seed 0)")
plt.show()
dist = analysis.layer_means(analysis.per_head(cap, "mean_distance", half))
for layer, row in enumerate(dist):
    print(f"layer {layer}: mean distance per head {[round(float(v), 1) for v in row]} tokens")

# %% [markdown]
# **Figure 1.4.** For each layer (x) and head (colour): how far back the head looks (top), how widely
# (middle) and how strongly it fires (bottom), over the queries in the second half of the context of a
# fixed validation batch. Boxes span the middle half of the queries, whiskers the rest (outliers hidden).

# %% [markdown]
# ## Seed-to-seed noise
# The spread of the best validation loss over seeds is the floor under every comparison in this
# book. With n seeds per arm, the 95% Welch interval of a difference is roughly ±t·s·√(2/n) wide.

# %% tags=["hide-input"]
vals = table.val_loss_full
noise = compare(table)
display(noise[["tag", "n", "mean", "std"]])

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
from tinygpt.book.prose import span_trend

deepest = dist[-1].mean()
first = dist[0].mean()
how_far = {"longer": "further", "shorter": "less far", "about as long": "about as far"}[span_trend(first, deepest)]
display(Markdown(
    f"- Preset **{preset}**: the baseline reaches a best validation loss of **{vals.mean():.4f} ± {vals.std():.4f}** "
    f"nats/char (mean ± std over {len(vals)} seeds; range {vals.min():.4f}–{vals.max():.4f}).\n"
    f"- Seed noise: a standard deviation of {vals.std():.4f} nats; any variant difference smaller than about "
    f"{2 * vals.std():.3f} nats cannot be told apart from it with a few seeds.\n"
    f"- Attention structure: heads of the first layer look back {first:.1f} tokens on average, those of the "
    f"last layer {deepest:.1f} tokens ({how_far} in the last layer).\n"
    f"- Training took {table.elapsed_s.median():.0f} s per run (median) at {table.tokens_per_s.median():,.0f} tokens/s "
    f"on {table.device.iloc[0]}."
))
