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
#   pre-norm, and reached only 1.51 validation loss against the baseline's ~1.47.
# - `structure_embedding` turns the structure into three full-width vectors by small MLPs: a gate and
#   a shift of the attention output, and a shift added after the MLP.
#
# A control isolates the placement: `structure_mlp_prenorm` is structure_mlp with the baseline's
# pre-norm block. If the post-norm placement, not the features, costs the loss, the control should
# close the gap.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import analysis, plots, study
from tinygpt.book.experiments import load_run_model
from tinygpt.book.notebook import environment
from tinygpt.book.results import load_histories, summary_lines
from tinygpt.data import load_dataset

environment()
plots.setup()

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
# ## Validation loss against the baseline

# %%
params = dict(preset=preset, variants=variants, n_seeds=n_seeds, baseline_seeds=baseline_seeds)
planned = study.chapter_runs("04_structure_embeddings", params)  # the same list `book run` plans from
runs, table = study.train_and_compare(planned, jobs, retrain, root, device)
display(table.round(4))
plots.comparison(runs, table, ["baseline"] + variants)
plt.show()

# %% [markdown]
# Train and validation loss together: a variant that is worse on both is harder to optimise; one
# that is worse only on validation over-fits.

# %%
hist = load_histories(runs.path)
final = hist[hist.iter == hist.iter.max()].groupby("tag")[["train_loss", "val_loss"]].mean()
final["gap (val − train)"] = final.val_loss - final.train_loss
display(final.round(4))

# %% [markdown]
# ## What the added signals look like
# structure_mlp: the 2H normalised features the MLP receives, along the positions of one validation
# sequence (layer 0 and the last layer, seed 0). structure_embedding: the size (root mean square
# over tokens and channels) of its three full-width signals next to the attention output they gate
# and shift.

# %%
data = load_dataset("shakespeare_char")
idx = analysis.val_batch(data, T, batch=8)
seed0 = {tag: runs[(runs.tag == tag) & (runs.seed == 0)].path.iloc[0] for tag in variants}
sig = None
if "structure_mlp" in variants:
    feats = analysis.module_outputs(load_run_model(seed0["structure_mlp"]), idx, "structure")  # (B, T, 2H) each
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    for ax, layer in zip(axes, sorted({0, L - 1})):
        ax.plot(feats[layer][0].numpy(), lw=1)
        ax.set(xlabel="position in the sequence (tokens)", ylabel="feature (after LayerNorm)",
               title=f"structure_mlp layer {layer}: rel and sd of {H} heads")
    plt.show()
if "structure_embedding" in variants:
    model = load_run_model(seed0["structure_embedding"])
    emb = analysis.module_outputs(model, idx, "structure")  # (f_scale, f_bias, f_loc) per layer
    attn = analysis.module_outputs(model, idx, "attn")  # (y, stats, iota) per layer
    rms = lambda t: float(t.pow(2).mean().sqrt())
    sig = pd.DataFrame([{"layer": layer, "attention output": rms(attn[layer][0]), "f_scale": rms(e[0]),
                         "f_bias": rms(e[1]), "f_loc": rms(e[2])} for layer, e in enumerate(emb)])
    ax = sig.set_index("layer").plot.bar(figsize=(8, 3.5))
    ax.set(ylabel="root mean square", title="structure_embedding: size of the added signals (seed 0)")
    plt.show()
    display(sig.round(4))

# %% [markdown]
# ## Summary

# %%
lines = summary_lines(table)
means = table.set_index("tag")["mean"]
if {"structure_mlp", "structure_mlp_prenorm"} <= set(means.index):
    gap, gap_pre = means["structure_mlp"] - means["baseline"], means["structure_mlp_prenorm"] - means["baseline"]
    share = 1 - gap_pre / gap if gap > 0 else float("nan")
    lines.append(f"- post-norm structure_mlp is {gap:+.4f} from the baseline, the pre-norm control {gap_pre:+.4f}: "
                 + (f"the placement accounts for {share:.0%} of the gap" if gap > 0 else "there is no gap to explain"))
if sig is not None:
    ratio = (sig.f_scale * sig["attention output"] + sig.f_bias).mean() / sig["attention output"].mean()
    lines.append(f"- structure_embedding's added signals have {ratio:.2f}× the size of the attention output on average "
                 f"(f_loc {sig.f_loc.mean():.3f} against attention {sig['attention output'].mean():.3f})")
display(Markdown("\n".join(lines)))
