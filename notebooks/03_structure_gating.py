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
# # 3. Gating each head by the attention structure
#
# ## Overview
# `structure_gate` computes, for every token, the attention structure of all heads of a layer —
# how far back each head looks on average (relative mean key position), how widely (spread) and how
# strongly it fires (mean logit) — and passes it through a small MLP to a gate g = 2·sigmoid(·) on
# each head's output: a head can be turned down to 0 or up to 2×. The control `output_gate`
# (Gated Attention, {cite:p}`qiu2025gated`) gates each head with sigmoid(W x) from the token alone, without
# the structure. If the structure carried something the network lacks, structure_gate should beat
# output_gate and the baseline. We compare the losses, then look at the gates and at how they
# relate to the structure.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import analysis, notebook, plots, prose, study
from tinygpt.book.experiments import load_run_model
from tinygpt.book.notebook import environment
from tinygpt.data import load_dataset

environment()
plots.setup()

# %% [markdown]
# ## Parameters
# The cell below is what papermill and `tinygpt book run --set` change. What each preset costs, on a 2-core CPU:
# - `smoke`: a 2-layer model for a few dozen steps, seconds; its figures mean nothing.
# - `cpu` (the default, what this site shows): this chapter trains its 2 variants × 3 seeds, about 3 min each (
#   about 17 min with `jobs=1`), and re-uses chapter 1's baseline. The repository keeps each run's losses
#   (`results/cpu/`) but not its checkpoints; the figures of what the models learned read seed 0's models, so
#   **a fresh clone retrains seed 0 of each variant** (≈ 3 min with `jobs=2`). The whole book's training at cpu took
#   55 min with two jobs
#   (`results/cpu/book_run.json`).
# - `gpu`: nanoGPT's own configuration, hours on a CPU; minutes per run on a GPU.
#
# To experiment without touching the repository, run `make lab` (see the README): it opens copies of
# these notebooks, and writes any training into `work/results/`.

# %% tags=["parameters"]
preset = "cpu"  # smoke (seconds, for tests), cpu (nanoGPT's CPU config) or gpu (nanoGPT's shakespeare_char config)
n_seeds = 3  # seeds per variant
baseline_seeds = 5  # baseline seeds (trained by chapter 01 and re-used here)
variants = ["structure_gate", "output_gate"]  # variants of this chapter
out_dir = ""  # results folder; "" means the repository's results/
device = "auto"  # auto (cuda if available), cpu or cuda
retrain = False  # True trains this chapter's variants again even where finished runs exist
jobs = 1  # training runs in parallel (separate processes)

# %%
study.check_parameters(preset, variants, n_seeds, device)
study.check_parameters(preset, n_seeds=baseline_seeds)
root = out_dir or None
cfg = tinygpt.make_config(preset)
L, H, T = cfg.model.n_layer, cfg.model.n_head, cfg.model.block_size

# %% [markdown]
# ## The equations
# For every token $i$ and head $h$ the attention structure summarises where the head looked, with
# normalised positions $u_j = j / L$ (`structure_from_moments`):
#
# $$\mu_i = \sum_j p_{ij}\, u_j, \qquad \mathrm{rel}_i = \mu_i - u_i, \qquad
# \mathrm{sd}_i = \sqrt{\textstyle\sum_j p_{ij} (u_j - \mu_i)^2 + \epsilon}, \qquad m_i = \sum_j p_{ij}\, s_{ij},$$
#
# how far back (a fraction of the context, ≤ 0), how widely, and how strongly (the mean logit) it looks.
#
# **Structure gate** (`StructureGate`): the three statistics of all $H$ heads, each normalised across the heads
# by a LayerNorm, pass a small MLP to one gate per head,
#
# $$g_i = 2\, \sigma\big(\mathrm{MLP}([\mathrm{LN}_H(m_i),\, \mathrm{LN}_H(\mathrm{rel}_i),\,
# \mathrm{LN}_H(\mathrm{sd}_i)])\big) \in (0, 2)^H,$$
#
# with $\sigma$ the logistic sigmoid and MLP = Linear $3H \to 12H$, GELU, Linear $12H \to H$. Each head's output
# is multiplied by its $g_{hi}$ before the output projection; $g = 1$ is the baseline.
#
# **Output gate** (`OutputGate`, the control): $g_i = \sigma(W_g x_i + b_g) \in (0, 1)^H$, from the token's
# input $x_i$ alone, without the structure.
#
# The code, from `tinygpt/variants.py`:

# %%
import inspect

from tinygpt import variants as V

for fn in (V.structure_from_moments, V.StructureGate.forward, V.OutputGate.forward):
    print(inspect.getsource(fn))

# %% [markdown]
# ## Validation loss against the baseline

# %%
params = dict(preset=preset, variants=variants, n_seeds=n_seeds, baseline_seeds=baseline_seeds)
runs, table = notebook.comparison("03_structure_gating", params, jobs, retrain, root, device)

# %% [markdown]
# **Figure 3.1.** Top: validation loss during training, mean over seeds (line) and their range (band), in the
# book's colours. Bottom: each variant's best validation loss minus the baseline's, with its 95% Welch
# interval (the verdict in brackets) and each seed as a small dot; left of the black line is better.
#
# ## The difference during training
# Figure 3.2 follows the difference at every evaluation.

# %% tags=["hide-input"]
gap = notebook.gap_during_training(runs)

# %% [markdown]
# **Figure 3.2.** Each gate's validation loss minus the baseline's at each evaluation: mean over seeds (line)
# and its 95% Welch band; below zero is better.

# %% [markdown]
# ## The gates
# Distribution of each head's gate over the tokens of a fixed validation batch (seed 0). A
# structure gate of 1 leaves the head as in the baseline; the original saw gates of up to about 2×
# up or down (0.5–2). An output gate lies in (0, 1). The batch is `analysis.gate_batch`, the one fixed
# batch on which every chapter measures gates, so that the ranges quoted in chapters 6 and 7 agree.

# %%
data = load_dataset("shakespeare_char")
idx = analysis.gate_batch(data, T)
seed0 = {tag: runs[(runs.tag == tag) & (runs.seed == 0)].path.iloc[0] for tag in variants}
caps = {tag: tinygpt.capture(load_run_model(path), idx) for tag, path in seed0.items()}
gates = {tag: analysis.per_head(caps[tag], "gate") for tag in variants}
fig = plots.per_head_grid([(gates[tag], f"{tag}: gate per head (seed 0)", "gate value") for tag in variants])
for ax in fig.axes:
    ax.axhline(1.0, color="k", ls=":", lw=1)
plt.show()
gate_stats = pd.DataFrame([{"variant": tag, **analysis.gate_range(gates[tag])} for tag in variants])
display(gate_stats.round(3))

# %% [markdown]
# **Figure 3.3.** Each head's gate (colour) per layer (x) over the tokens of a fixed validation batch: boxes
# span the middle half of the tokens, whiskers the rest. The dotted line at 1 leaves a head as in the baseline.

# %% [markdown]
# ## What the structure gate listens to
# Correlation (Pearson, over tokens) between each head's gate and that head's own structure
# features, per layer. A gate driven by the structure shows large |r|; a gate that ignores it, |r|
# near 0. The same is shown for the output gate, which cannot see the structure: any correlation
# there is what the token alone already predicts about the structure (Figure 3.4).

# %% tags=["hide-input"]
corr_rows = []
for tag in variants:
    cap = caps[tag]
    for layer, lc in enumerate(cap.layers):
        for h in range(H):
            g = lc.gate[:, h].flatten()
            for stat in ("mean_distance", "std_distance", "mean_logit"):
                s = lc.stats[stat][:, h].flatten()
                r = np.corrcoef(g.numpy(), s.numpy())[0, 1] if g.std() > 0 and s.std() > 0 else np.nan
                corr_rows.append({"variant": tag, "layer": layer, "head": h, "stat": stat, "r": r})
corr = pd.DataFrame(corr_rows)
plots.gate_correlation(corr, variants)
plt.show()
mean_abs = corr.assign(abs_r=corr.r.abs()).groupby("variant").abs_r.mean()

# %% [markdown]
# **Figure 3.4.** Pearson correlation over tokens between each head's gate and that head's own structure
# statistics (rows), for every layer L and head H (columns); red is positive, blue negative.
#
# A gate that is *given* the structure need not follow it more than one that is not: the token itself
# predicts much of where a head will look (a space, a newline, the start of a word), so a gate computed
# from the token correlates with the structure too. The summary compares the two gates' mean |r|.

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
lines = prose.summary_lines(table)
for _, r in gate_stats.iterrows():
    lines.append(f"- {r.variant}: gates range {r['min']:.2f}–{r['max']:.2f} (1st–99th percentile "
                 f"{r.p1:.2f}–{r.p99:.2f}, median {r['median']:.2f}) on the fixed batch `analysis.gate_batch`")
lines.append(prose.gate_correlation_line(mean_abs[[t for t in variants if t in mean_abs]]))
display(Markdown("\n".join(lines)))
