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
# (Gated Attention, Qiu et al. 2025) gates each head with sigmoid(W x) from the token alone, without
# the structure. If the structure carried something the network lacks, structure_gate should beat
# output_gate and the baseline. We compare the losses, then look at the gates and at how they
# relate to the structure.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import analysis, plots, study
from tinygpt.book.experiments import load_run_model
from tinygpt.book.notebook import environment
from tinygpt.book.results import summary_lines
from tinygpt.data import load_dataset

environment()
plots.setup()

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
# ## Validation loss against the baseline

# %%
params = dict(preset=preset, variants=variants, n_seeds=n_seeds, baseline_seeds=baseline_seeds)
planned = study.chapter_runs("03_structure_gating", params)  # the same list `book run` plans from
runs, table = study.train_and_compare(planned, jobs, retrain, root, device)
display(table.round(4))
plots.comparison(runs, table, ["baseline"] + variants)
plt.show()

# %% [markdown]
# ## The gates
# Distribution of each head's gate over the tokens of a fixed validation batch (seed 0). A
# structure gate of 1 leaves the head as in the baseline; the original saw gates of up to about 2×
# up or down (0.5–2). An output gate lies in (0, 1).

# %%
data = load_dataset("shakespeare_char")
idx = analysis.val_batch(data, T, batch=8)
seed0 = {tag: runs[(runs.tag == tag) & (runs.seed == 0)].path.iloc[0] for tag in variants}
caps = {tag: tinygpt.capture(load_run_model(path), idx) for tag, path in seed0.items()}
gates = {tag: analysis.per_head(caps[tag], "gate") for tag in variants}
fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 3.8), squeeze=False)
for ax, tag in zip(axes[0], variants):
    plots.per_head(gates[tag], ax, f"{tag}: gate per head (seed 0)", "gate value")
    ax.axhline(1.0, color="k", ls=":", lw=1)
plt.show()
gate_stats = []
for tag in variants:
    allg = np.concatenate([g.ravel() for g in gates[tag].values()])
    gate_stats.append({"variant": tag, "min": allg.min(), "p1": np.quantile(allg, 0.01), "median": np.median(allg),
                       "p99": np.quantile(allg, 0.99), "max": allg.max(),
                       "share ≥ 1.5× or ≤ 1/1.5× of the median": np.mean((allg >= 1.5 * np.median(allg))
                                                                          | (allg <= np.median(allg) / 1.5))})
gate_stats = pd.DataFrame(gate_stats)
display(gate_stats.round(3))

# %% [markdown]
# ## What the structure gate listens to
# Correlation (Pearson, over tokens) between each head's gate and that head's own structure
# features, per layer. A gate driven by the structure shows large |r|; a gate that ignores it, |r|
# near 0. The same is shown for the output gate, which cannot see the structure: any correlation
# there is what the token alone already predicts about the structure.

# %%
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
fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 3.6), squeeze=False)
for ax, tag in zip(axes[0], variants):
    pivot = corr[corr.variant == tag].pivot_table(index="stat", columns=["layer", "head"], values="r")
    im = ax.imshow(pivot.values, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto")
    ax.set_yticks(range(len(pivot.index)), pivot.index)
    ax.set_xticks(range(pivot.shape[1]), [f"L{a}H{b}" for a, b in pivot.columns], rotation=90, fontsize=7)
    ax.set(title=f"{tag}: r(gate, structure)", xlabel="layer, head")
    ax.grid(False)
fig.colorbar(im, ax=axes[0, -1], label="Pearson r")
plt.show()
mean_abs = corr.assign(abs_r=corr.r.abs()).groupby("variant").abs_r.mean()

# %% [markdown]
# ## Summary

# %%
lines = summary_lines(table)
for _, r in gate_stats.iterrows():
    lines.append(f"- {r.variant}: gates range {r['min']:.2f}–{r['max']:.2f} (1st–99th percentile "
                 f"{r.p1:.2f}–{r.p99:.2f}, median {r['median']:.2f})")
lines.append("- mean |r| between gate and structure: "
             + ", ".join(f"{tag} {mean_abs[tag]:.2f}" for tag in variants if tag in mean_abs))
display(Markdown("\n".join(lines)))
