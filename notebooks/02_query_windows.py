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
# isolate the query dependence: **alibi** (fixed slopes per head, {cite:p}`press2022alibi`) and
# **learned_span** (one learned hard span per head, {cite:p}`sukhbaatar2019adaptive`). Two recent mechanisms
# are close relatives: the Forgetting Transformer's data-dependent forget gate {cite:p}`lin2025forgetting`
# decays attention with distance at a rate the tokens choose, like the soft window, and in Selective
# Attention {cite:p}`leviathan2024selective` a token lowers the attention later tokens pay to earlier ones,
# as the key importance can. We train each with several seeds, compare it with the baseline, and look at
# what the windows learn — and how much attention work a hard window could skip.

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
# - `cpu` (the default, what this site shows): this chapter trains its 5 variants × 3 seeds, about 2.7 min each
#   (about 40 min with `jobs=1`, about 20 min with `jobs=2`), and re-uses chapter 1's baseline. The repository keeps
#   each run's losses (`results/cpu/`) but not its checkpoints; the figures of what the models learned read seed
#   0's models, so **a fresh clone retrains seed 0 of each variant** (≈ 8 min with `jobs=2`). The whole book's
#   training at cpu took 55 min with two
#   jobs (`results/cpu/book_run.json`).
# - `gpu`: nanoGPT's own configuration, hours on a CPU; minutes per run on a GPU.
#
# To experiment without touching the repository, run `make lab` (see the README): it opens copies of
# these notebooks, and writes any training into `work/results/`.

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
# ## The equations
# Notation (as on the page {doc}`variants` and in `tinygpt/variants.py`): query position $i$, key
# position $j \le i$, distance $d = i - j$, context length $L$, scores $s_{ij} = q_i \cdot k_j / \sqrt{D}$,
# and $p_{ij}$ the weights applied to the values.
#
# **Span** (soft and hard window), per head $h$ and token $i$, from the block's input $x_i$
# (`SpanPredictor`, `span_from_logit`):
#
# $$\sigma_{hi} = 1 + \frac{L}{2}\, e^{a_{hi}}, \qquad a_i = W_\sigma x_i + b_\sigma .$$
#
# At $a = 0$ the span is $1 + L/2$, where training starts.
#
# **Soft window** (`soft_window_offset`): a linear penalty in distance whose slope $1/\sigma$ the query chooses,
#
# $$s'_{ij} = s_{ij} + 1 - \frac{d + 1}{\sigma_{hi}}, \qquad p_{ij} = \operatorname{softmax}_j(s'_{ij}) .$$
#
# **Hard window** (`ramp`, `ramp_offset`): the plain causal weights $p^0 = \operatorname{softmax}(s)$ are
# multiplied by a ramp that is zero from distance $\sigma - 1$ on, and renormalised,
#
# $$r_{ij} = 1 - \exp\!\Big(-\max\big(0,\, 1 - \tfrac{d+1}{\sigma_{hi}}\big)\Big) + \epsilon, \qquad
# p_{ij} = \frac{(p^0_{ij} + \epsilon)\, r_{ij}}{\sum_{j' \le i} (p^0_{ij'} + \epsilon)\, r_{ij'}}
# \approx \operatorname{softmax}_j(s_{ij} + \log r_{ij}),$$
#
# with $\epsilon = 10^{-10}$; it stays differentiable in $\sigma$ through the ramp.
#
# **Key importance** (`KeyImportance`): a scalar per token, carried from layer to layer and added to every logit
# in which that token is the key (shared by the heads),
#
# $$\iota^0_j = w_0 \cdot e_j, \qquad \iota^l_j = \iota^{l-1}_j + w_l \cdot x^l_j, \qquad
# s'_{ij} = s_{ij} + \iota^l_j ,$$
#
# where $e_j$ is the token's embedding and $x^l_j$ the input of block $l$; the $w_l$ start at zero, so training
# starts from the baseline.
#
# **Controls.** *alibi* (`alibi_slopes`, `alibi_offset`), a soft window without the query dependence:
# $s'_{ij} = s_{ij} - m_h\, d$ with fixed slopes $m_h = 2^{-8h/H}$. *learned_span* (`HeadSpan`), a hard window
# without it: one learned $\sigma_h = 1 + \frac{L}{2} e^{a_h}$ per head, the same ramp.
#
# The code, from `tinygpt/variants.py`:

# %%
import inspect

from tinygpt import variants as V

for fn in (V.span_from_logit, V.soft_window_offset, V.ramp, V.ramp_offset, V.alibi_slopes, V.alibi_offset,
           V.KeyImportance.forward):
    print(inspect.getsource(fn))

# %% [markdown]
# ## Validation loss against the baseline
# Best validation loss of every run; the table gives mean ± std per variant and the difference to
# the baseline with its 95% Welch interval. The verdict reads "matches" when that interval covers 0
# and is narrower than the stated width, "better"/"worse" when it excludes 0, else "inconclusive".

# %%
params = dict(preset=preset, variants=variants, n_seeds=n_seeds, baseline_seeds=baseline_seeds)
runs, table = notebook.comparison("02_query_windows", params, jobs, retrain, root, device)

# %% [markdown]
# **Figure 2.1.** Top: validation loss during training, mean over seeds (line) and their range (band), one
# colour per variant, the same colours in every chapter. Bottom: each variant's best validation loss minus the
# baseline's, with its 95% Welch interval (the verdict in brackets) and each seed as a small dot; left of the
# black line is better.
#
# ## The difference during training
# The same difference at every evaluation, not only at the best checkpoint (Figure 2.2): does a variant's
# advantage or deficit appear early and stay, or does it change as the baseline keeps learning?

# %% tags=["hide-input"]
gap = notebook.gap_during_training(runs)

# %% [markdown]
# **Figure 2.2.** Each variant's validation loss minus the baseline's at each evaluation: mean over seeds
# (line) and its 95% Welch band; below zero is better. The estimates come from a few random validation
# batches, so single evaluations wobble by a few hundredths.

# %% [markdown]
# ## What the windows learn
# The span σ (tokens) each head chose, over the queries of a fixed batch of validation text in the
# second half of the context, per layer and head. A span of about T/2 + 1 is where training started;
# a span ≥ T means the head sees the whole context (Figure 2.3).

# %%
data = load_dataset("shakespeare_char")
idx = analysis.val_batch(data, T, batch=8)
seed0 = {tag: runs[(runs.tag == tag) & (runs.seed == 0)].path.iloc[0] for tag in ["baseline"] + variants}
caps = {tag: tinygpt.capture(load_run_model(path), idx) for tag, path in seed0.items()}
window_tags = [v for v in variants if caps[v].layers[0].span is not None]
medians, panels = {}, []
for tag in window_tags:
    spans = analysis.per_head(caps[tag], "span", T // 2)
    medians[tag] = [float(np.median(s)) for s in spans.values()]
    panels.append(({k: np.log2(v) for k, v in spans.items()}, f"{tag}: learned spans (seed 0)", "log₂ span (tokens)"))
if panels:
    fig = plots.per_head_grid(panels)
    for ax in fig.axes:
        ax.axhline(np.log2(T), color="k", ls=":", lw=1)
    plt.show()
for tag, m in medians.items():
    print(f"{tag:13s} median span per layer: {[round(x, 1) for x in m]} tokens (context {T})")

# %% [markdown]
# **Figure 2.3.** The span σ each head chose (log₂ tokens), per layer (x) and head (colour), over the
# queries in the second half of the context of a fixed validation batch; the dotted line is the context
# length. learned_span has one span per head, so its boxes are flat lines.
#
# Attention maps of the first and last layer (Figures 2.4 and 2.5). The hard window has an edge, drawn as a
# thin dashed line: keys left of it are beyond the span and get no weight. The soft window has none (its
# penalty grows smoothly with distance), so its maps show the weights alone.

# %%
for k, tag in enumerate([t for t in ("soft_window", "hard_window") if t in window_tags]):
    edge = tag == "hard_window"  # the soft window has no edge
    plots.attention_grid(caps[tag], sorted({0, L - 1}), list(range(min(H, 4))), span=edge,
                         suptitle=f"{tag} (seed 0): weights" + (" and window edge" if edge else ""))
    plt.show()
    plots.caption(f"2.{4 + k}", f"{tag}'s attention weights in the first and last layer (rows) for up to four "
                  "heads; one colour scale per figure" + (", and each query's window edge d = σ − 1 (dashed)."
                                                          if edge else "."))

# %% [markdown]
# ## How much attention work a hard window skips
# The share of causal (query, key) pairs that the learned hard windows set to zero, and the share of
# whole key tiles a block-sparse kernel (FlexAttention) could skip, at the tile size of each column
# (16×16; contexts of 128 and longer add a T/4 tile). Only skipped tiles save time; pairs zeroed inside a
# tile do not.

# %% tags=["hide-input"]
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
# The importance ι added to every logit where a token is the key (Figure 2.6): its spread per layer,
# and the characters it favours and suppresses most in the last layer (mean ι per character, seed 0).

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
    plots.key_importance(spread, per_char)
    plt.show()
    display(Markdown("**Figure 2.6.** Top: the spread (standard deviation over tokens) of ι in each layer. Bottom: "
                     "the mean ι of each key character in the last layer, the lowest (vermillion) and highest (blue); "
                     "a key with a high ι draws attention from every query."))

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
lines = prose.summary_lines(table)
for tag, m in medians.items():
    lines.append(prose.span_line(tag, m, L))
if len(skip):
    hw = skip[skip.variant == skip.variant.iloc[0]]
    tile = f"tiles skipped ({tiles[0]}×{tiles[0]})"
    lines.append(f"- {skip.variant.iloc[0]} zeroes {hw['pairs zeroed'].mean():.1%} of causal pairs on average; a "
                 f"{tiles[0]}×{tiles[0]}-tile kernel would skip {hw[tile].mean():.1%} of tiles")
if ki:
    lines.append(f"- key_importance: ι spreads by {min(ki['spread']):.2f}–{max(ki['spread']):.2f} logits across "
                 f"layers; lowest for {ki['low']}, highest for {ki['high']}")
display(Markdown("\n".join(lines)))
