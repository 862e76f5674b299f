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
# one verdict per variant and one per hypothesis of the original study, each with the figure that
# shows it. Nothing here is trained or typed by hand; run chapter 6 first.

# %%
import pandas as pd
from IPython.display import Markdown, display

from tinygpt.book import plots, study
from tinygpt.book.experiments import results_root
from tinygpt.book.notebook import environment
from tinygpt.checkpoint import read_json

environment()
plots.setup()

# %% tags=["parameters"]
preset = "cpu"  # the preset whose results to summarise: smoke, cpu or gpu
out_dir = ""  # results folder; "" means the repository's results/

# %%
study.check_parameters(preset)
path = results_root(out_dir or None) / preset / "summary.json"
if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: execute chapter 6 at preset {preset!r} first "
                            f"(tinygpt book run --preset {preset})")
s = read_json(path)
table = pd.DataFrame(s["table"])

# %% [markdown]
# ## Did any variant beat the baseline?
# Difference of each variant's best validation loss to the baseline's, with its 95% Welch interval
# (chapter 6, section 1).

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(9, 4.5))
plots.differences(table, ax, width=s["match_width"])
plt.show()
counts = table.verdict.value_counts().to_dict()
better = table[table.verdict == "better"].tag.tolist()
display(Markdown(
    f"At the **{s['preset']}** preset, of {table.verdict.notna().sum()} variants and controls: "
    + ", ".join(f"**{n} {k}**" for k, n in counts.items())
    + (f". Better than the baseline: {', '.join(better)}." if better else ". None is better than the baseline.")
))

# %% [markdown]
# ## Hypothesis 1: the residual stream already carries the information — figure: probe R² per layer

# %%
h1 = s["h1"]
plots.probe_r2(pd.DataFrame(h1["per_layer"]))
plt.show()
display(Markdown(
    f"**{h1['verdict'].upper()}.** Mean held-out R² of the attention structure from the residual stream with the "
    f"query position {h1['structure']['resid+position']:.2f} (position alone {h1['structure']['position']:.2f}, "
    f"shuffled {h1['structure']['shuffled']:.2f}); of the learned log spans {h1['spans']['resid+position']:.2f} "
    f"(position alone {h1['spans']['position']:.2f}). Rule: supported if R² ≥ 0.5 for both; refuted if below 0.25 "
    f"for either."
))

# %% [markdown]
# ## Hypothesis 2: the data are too small — figure: difference against data size

# %%
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

# %%
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
