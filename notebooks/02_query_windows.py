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
# # 2. Query-dependent attention windows
#
# ## Overview
# The original study let every token choose how far back each head looks: a span σ predicted from
# the token's embedding. Two forms: a **soft window** lowers a key's logit by d/σ (ALiBi with a
# slope the query picks), a **hard window** multiplies the weights by a ramp that reaches zero at
# distance σ − 1 and renormalises. It also tried a learned **key importance**, a per-token offset to
# every logit where that token is the key, carried from layer to layer. Two published controls
# isolate the query dependence: **alibi** (fixed slopes per head) and **learned_span** (one learned
# hard span per head). We train each with several seeds, compare it with the baseline, and look at
# what the windows learn — and how much attention work a hard window could skip.

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
variants = ["soft_window", "hard_window", "key_importance", "alibi", "learned_span"]  # variants of this chapter
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
for v in variants:
    print(f"{v:15s} {tinygpt.VARIANTS[v]}")

# %% [markdown]
# ## Validation loss against the baseline
# Best validation loss of every run; the table gives mean ± std per variant and the difference to
# the baseline with its 95% Welch interval. The verdict reads "matches" when that interval covers 0
# and is narrower than the stated width, "better"/"worse" when it excludes 0, else "inconclusive".

# %%
params = dict(preset=preset, variants=variants, n_seeds=n_seeds, baseline_seeds=baseline_seeds)
planned = study.chapter_runs("02_query_windows", params)  # the same list `book run` plans from
runs, table = study.train_and_compare(planned, jobs, retrain, root, device)
display(table.round(4))
plots.comparison(runs, table, ["baseline"] + variants)
plt.show()

# %% [markdown]
# ## What the windows learn
# The span σ (tokens) each head chose, over the queries of a fixed batch of validation text in the
# second half of the context, per layer and head. A span of about T/2 + 1 is where training started;
# a span ≥ T means the head sees the whole context.

# %%
data = load_dataset("shakespeare_char")
idx = analysis.val_batch(data, T, batch=8)
seed0 = {tag: runs[(runs.tag == tag) & (runs.seed == 0)].path.iloc[0] for tag in ["baseline"] + variants}
caps = {tag: tinygpt.capture(load_run_model(path), idx) for tag, path in seed0.items()}
window_tags = [v for v in variants if caps[v].layers[0].span is not None]
fig, axes = plt.subplots(1, len(window_tags), figsize=(5.5 * len(window_tags), 3.8), squeeze=False)
medians = {}
for ax, tag in zip(axes[0], window_tags):
    spans = analysis.per_head(caps[tag], "span", T // 2)
    medians[tag] = [float(np.median(s)) for s in spans.values()]
    plots.per_head({k: np.log2(v) for k, v in spans.items()}, ax, f"{tag}: learned spans (seed 0)",
                   "log₂ span (tokens)")
    ax.axhline(np.log2(T), color="k", ls=":", lw=1)
plt.show()
for tag, m in medians.items():
    print(f"{tag:13s} median span per layer: {[round(x, 1) for x in m]} tokens (context {T})")

# %% [markdown]
# Attention maps of the first and last layer with the window edge drawn (cyan: keys left of the
# line are beyond the span).

# %%
for tag in [t for t in ("soft_window", "hard_window") if t in window_tags]:
    plots.attention_grid(caps[tag], sorted({0, L - 1}), list(range(min(H, 4))), span=True,
                         suptitle=f"{tag} (seed 0): weights and window edge")
    plt.show()

# %% [markdown]
# ## How much attention work a hard window skips
# The share of causal (query, key) pairs that the learned hard windows set to zero, and the share of
# whole key tiles a block-sparse kernel (FlexAttention) could skip at two tile sizes. Only skipped
# tiles save time; pairs zeroed inside a tile do not.

# %%
tiles = sorted({16, max(16, T // 4)})
rows = []
for tag in [t for t in ("hard_window", "learned_span") if t in window_tags]:
    pairs = analysis.window_skip_share(caps[tag])
    by_tile = {b: analysis.window_skip_share(caps[tag], block=b) for b in tiles}
    for layer in range(L):
        rows.append({"variant": tag, "layer": layer, "pairs zeroed": pairs[layer],
                     **{f"tiles skipped ({b}×{b})": by_tile[b][layer] for b in tiles}})

skip = pd.DataFrame(rows)
display(skip.round(3))

# %% [markdown]
# ## Key importance
# The importance ι added to every logit where a token is the key, in the last layer: its spread per
# layer and the characters it favours and suppresses most (mean ι per character, seed 0).

# %%
ki = None
if "key_importance" in variants:
    ki_model = load_run_model(seed0["key_importance"])
    iotas = analysis.module_outputs(ki_model, idx, "attn.key_importance")  # each (B, K, T)
    spread = [float(t.std()) for t in iotas]
    last = iotas[-1].mean(1).flatten().numpy()
    chars = np.array([data.itos[i] for i in idx.flatten().tolist()])
    per_char = pd.Series(last).groupby(chars).mean().sort_values()
    ki = {"spread": spread, "low": per_char.index[:3].tolist(), "high": per_char.index[-3:].tolist()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    axes[0].bar(range(L), spread)
    axes[0].set(xlabel="layer", ylabel="std of ι (logit units)", title="spread of the key importance per layer")
    per_char.plot.bar(ax=axes[1])
    axes[1].set(xlabel="character", ylabel="mean ι, last layer (logit units)", title="importance per key character")
    plt.show()

# %% [markdown]
# ## Summary

# %%
lines = summary_lines(table)
for tag, m in medians.items():
    trend = "shorter" if m[-1] < m[0] else "longer"
    lines.append(f"- {tag}: median span {m[0]:.1f} tokens in layer 0 and {m[-1]:.1f} in layer {L - 1} "
                 f"({trend} in the last layer; the original saw long windows early and short ones last)")
if len(skip):
    hw = skip[skip.variant == skip.variant.iloc[0]]
    tile = f"tiles skipped ({tiles[0]}×{tiles[0]})"
    lines.append(f"- {skip.variant.iloc[0]} zeroes {hw['pairs zeroed'].mean():.1%} of causal pairs on average; a "
                 f"{tiles[0]}×{tiles[0]}-tile kernel would skip {hw[tile].mean():.1%} of tiles")
if ki:
    lines.append(f"- key_importance: ι spreads by {min(ki['spread']):.2f}–{max(ki['spread']):.2f} logits across "
                 f"layers; lowest for {ki['low']}, highest for {ki['high']}")
display(Markdown("\n".join(lines)))
