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
# # 4. Feeding the attention structure into the residual stream
#
# ## Overview
# Two more ways the original fed the attention structure back into the network:
# - `structure_mlp` appends each head's relative mean position and spread — centred causally over
#   positions, scaled per position — to the input of the block's MLP. The original placed the
#   block's second LayerNorm *on the residual stream itself* (post-norm), unlike the baseline's
#   pre-norm, and reached only 1.51 validation loss against the baseline's 1.4697 (nanoGPT's README).
# - `structure_embedding` turns the structure into three full-width vectors by small MLPs: a gate and
#   a shift of the attention output, and a shift added after the MLP.
#
# A control isolates the placement: `structure_mlp_prenorm` is structure_mlp with the baseline's
# pre-norm block. If the post-norm placement, not the features, costs the loss, the control should
# close the gap.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import analysis, notebook, plots, prose, study
from tinygpt.book.experiments import load_run_model
from tinygpt.book.notebook import environment
from tinygpt.book.results import load_histories
from tinygpt.data import load_dataset

environment()
plots.setup()

# %% [markdown]
# ## Parameters
# The cell below is what papermill and `tinygpt book run --set` change. What each preset costs, on a 2-core CPU:
# - `smoke`: a 2-layer model for a few dozen steps, seconds; its figures mean nothing.
# - `cpu` (the default, what this site shows): this chapter trains its 3 variants × 3 seeds, about 2.8 min each
#   (about 25 min with `jobs=1`), and re-uses chapter 1's baseline. The repository keeps each run's losses
#   (`results/cpu/`) but not its checkpoints; the figures of what the models learned read seed 0's models, so
#   **a fresh clone retrains seed 0 of each variant** (≈ 5 min with `jobs=2`). The whole book's training at cpu took
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
variants = ["structure_mlp", "structure_embedding", "structure_mlp_prenorm"]  # variants and controls of this chapter
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
# Both variants read each head's relative mean key position $\mathrm{rel}_{hi}$ and spread $\mathrm{sd}_{hi}$
# (chapter 3's structure, `structure_from_moments`), with normalised positions $u_i = i / L$.
#
# **structure_mlp** (`StructureMLPFeatures`): each of the $2H$ features $f_i$ is centred on its running mean over
# the positions up to $i$, then scaled and shifted per position (length-$L$ parameters $a$, initialised to $4L$,
# and $b$, initialised to 0, shared by the heads and not weight-decayed),
#
# $$\tilde f_i = \Big(f_i - \frac{1}{i+1} \sum_{i' \le i} f_{i'}\Big)\, a_i + b_i ,$$
#
# and the $2H$ values pass a LayerNorm and join the MLP's input. The original's block re-normalises the residual
# stream itself (post-norm); the control `structure_mlp_prenorm` keeps the baseline's pre-norm block:
#
# $$\text{post-norm: } x \leftarrow \mathrm{LN}_2(x + \mathrm{Attn}(\mathrm{LN}_1 x)),\;
# x \leftarrow x + \mathrm{MLP}([x, \mathrm{LN}(\tilde f)]) \qquad
# \text{pre-norm: } x \leftarrow x + \mathrm{Attn}(\mathrm{LN}_1 x),\;
# x \leftarrow x + \mathrm{MLP}([\mathrm{LN}_2 x, \mathrm{LN}(\tilde f)]).$$
#
# **structure_embedding** (`StructureEmbedding`): the $2H + 1$ features $\phi_i = [\mathrm{rel}_i,
# \mathrm{sd}_i, H u_i]$ (not normalised, as in the original) feed three MLPs of the same shape
# ($2H{+}1 \to 4(2H{+}1) \to C$) whose full-width outputs gate and shift the attention output $a$ and shift
# the stream after the MLP:
#
# $$x \leftarrow x + a \odot (1 + f_{\mathrm{scale}}(\phi)) + f_{\mathrm{bias}}(\phi), \qquad
# x \leftarrow x + \mathrm{MLP}(\mathrm{LN}_2 x) + f_{\mathrm{loc}}(\phi).$$
#
# The code, from `tinygpt/variants.py` and `tinygpt/model.py`'s `Block.forward`:

# %%
import inspect

from tinygpt import model as M
from tinygpt import variants as V

for fn in (V.StructureMLPFeatures.forward, V.StructureEmbedding.forward, M.Block.forward):
    print(inspect.getsource(fn))

# %% [markdown]
# ## Validation loss against the baseline

# %%
params = dict(preset=preset, variants=variants, n_seeds=n_seeds, baseline_seeds=baseline_seeds)
runs, table = notebook.comparison("04_structure_embeddings", params, jobs, retrain, root, device)

# %% [markdown]
# **Figure 4.1.** Top: validation loss during training, mean over seeds (line) and their range (band), in the
# book's colours. Bottom: each variant's best validation loss minus the baseline's, with its 95% Welch
# interval (the verdict in brackets) and each seed as a small dot; left of the black line is better.
#
# ## The difference during training
# Figure 4.2 follows the difference at every evaluation.

# %% tags=["hide-input"]
gap = notebook.gap_during_training(runs)

# %% [markdown]
# **Figure 4.2.** Each variant's validation loss minus the baseline's at each evaluation: mean over seeds
# (line) and its 95% Welch band; below zero is better.

# %% [markdown]
# Train and validation loss together: a variant that is worse on both is harder to optimise; one
# that is worse only on validation over-fits.

# %% tags=["hide-input"]
hist = load_histories(runs.path)
final = hist[hist.iter == hist.iter.max()].groupby("tag")[["train_loss", "val_loss"]].mean()
final["gap (val − train)"] = final.val_loss - final.train_loss
display(final.round(4))

# %% [markdown]
# ## What the added signals look like
# structure_mlp: the 2H normalised features the MLP receives, along the positions of one validation
# sequence (layer 0 and the last layer, seed 0; Figure 4.3). structure_embedding: how much each of its
# signals changes the residual stream, next to the attention output itself (Figure 4.4). All three are
# compared as what they *add* to the stream, like with like: the gate's change is $a \odot f_{\mathrm{scale}}$
# (not $f_{\mathrm{scale}}$, a multiplier without units of the stream), the shifts are $f_{\mathrm{bias}}$ and
# $f_{\mathrm{loc}}$, and the reference is the attention output $a$ that the baseline adds.

# %%
data = load_dataset("shakespeare_char")
idx = analysis.val_batch(data, T, batch=8)
seed0 = {tag: runs[(runs.tag == tag) & (runs.seed == 0)].path.iloc[0] for tag in variants}
sig = None
if "structure_mlp" in variants:
    feats = analysis.module_outputs(load_run_model(seed0["structure_mlp"]), idx, "structure")  # (B, T, 2H) each
    shown = sorted({0, L - 1})
    plots.structure_features({layer: feats[layer][0].numpy() for layer in shown}, H, shown)
    plt.show()
    display(Markdown("**Figure 4.3.** The features structure_mlp appends to the MLP's input, along one validation "
                     "sequence: for each head (colour) its causally centred, scaled relative position (rel, solid) "
                     "and spread (sd, dashed), after the LayerNorm; first and last layer."))
if "structure_embedding" in variants:
    model = load_run_model(seed0["structure_embedding"])
    emb = analysis.module_outputs(model, idx, "structure")  # (f_scale, f_bias, f_loc) per layer
    attn = analysis.module_outputs(model, idx, "attn")  # (a, stats, iota) per layer
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    sig = pd.DataFrame([{"layer": layer, "attention output": rms(attn[layer][0]),
                         "gate change": rms(attn[layer][0] * e[0]), "f_bias": rms(e[1]), "f_loc": rms(e[2])}
                        for layer, e in enumerate(emb)])
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    plots.signal_sizes(sig, ax)
    plt.show()
    display(Markdown("**Figure 4.4.** Root mean square, over tokens and channels, of what each structure_embedding "
                     "signal adds to the residual stream in each layer (the gate's change a ⊙ f_scale and the "
                     "shifts f_bias and f_loc), beside the attention output a (grey) that the baseline adds too."))
    display(sig.round(4))

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
lines = prose.summary_lines(table)
placement = prose.placement_line(table)
if placement:
    lines.append(placement)
if sig is not None:
    lines.append(prose.signal_line(sig))
display(Markdown("\n".join(lines)))
