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
# What the book found at both scales, and what it means for the original study's question. The discussion
# below is written by hand (`tinygpt/book/conclusions.py`); every number in it is read from the summary
# that chapter 6 writes (`results/<preset>/summary.json`), and each judgement it makes in words is checked
# against those numbers before the page renders. Nothing here is trained. Run chapter 6 first.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import conclusions, plots, plots_regime, prose, scales, study
from tinygpt.book.experiments import results_root
from tinygpt.book.notebook import environment
from tinygpt.checkpoint import read_json

environment()
plots.setup()

# %% [markdown]
# ## Parameters
# This page trains nothing: it reads `results/<preset>/summary.json`, which chapter 6 writes, and takes
# seconds at any preset.

# %% tags=["parameters"]
preset = "cpu"  # the preset whose results to summarise: smoke, cpu or gpu
out_dir = ""  # results folder; "" means the repository's results/

# %% tags=["hide-input"]
study.check_parameters(preset)
path = results_root(out_dir or None) / preset / "summary.json"
if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: execute chapter 6 at preset {preset!r} first "
                            f"(tinygpt book run --preset {preset})")
s = read_json(path)
table, gpu = pd.DataFrame(s["table"]), pd.DataFrame(s["gpu"]["table"])
f = conclusions.facts(s)
failed = conclusions.failed_claims(f)
if failed and preset != "smoke":  # a written sentence the results no longer bear out is never shown
    conclusions.render("original", f)  # raises, naming the claims that failed


def section(name):
    display(Markdown(conclusions.render(name, f) if not failed else
                     f"*(At the {preset} preset the written text does not apply; its claims that fail here: "
                     + "; ".join(failed) + ".)*"))


# %% [markdown]
# ## What the original found

# %% tags=["hide-input"]
section("original")

# %% [markdown]
# ## The two studies side by side
# The original's reported numbers (the book's page *The variants, exactly*) beside this book's at each scale:
# best validation loss on the whole validation split, mean ± std over seeds, and the difference to the
# baseline with its verdict.

# %% tags=["hide-input"]
display(Markdown(prose.original_vs_ours({"this book, gpu preset": (tinygpt.make_config("gpu"), gpu),
                                         f"this book, {preset} preset": (tinygpt.make_config(preset), table)})))

# %% [markdown]
# ## At the original's scale

# %% tags=["hide-input"]
section("reproduced")
fig, axes = plt.subplots(2, 1, figsize=(7.6, 0.42 * (len(table) + len(gpu)) + 3.2),
                         gridspec_kw={"height_ratios": [len(gpu) + 1, len(table) + 1]})
plots.differences(gpu, axes[0], title="at the gpu preset (the original's scale; 2 seeds)")
plots.differences(table, axes[1], title=f"at the {preset} preset")
plt.show()
plots.caption("7.1", "Each variant's best validation loss minus the baseline's, 95% Welch intervals, verdict in "
              f"brackets: top at the original's scale, bottom at the {preset} preset. Chapter 6, section 1, shows the "
              "seeds.")

# %% [markdown]
# ## What the small scale adds: when the variants are ahead

# %% tags=["hide-input"]
section("adds")
h3 = s["h3"]
g_pts, g_seeds = scales.scale_points(gpu, pd.DataFrame(s["gpu"]["final"]), s["gpu"]["tokens"])
fig, ax = plt.subplots(figsize=(plots.MAX_WIDTH - 0.2, 4.4))
plots_regime.gap_by_tokens(pd.DataFrame(h3["points"]), g_seeds, ax, h3["original_tokens"], g_pts, g_seeds,
                           h3["fits"])
plt.show()
plots.caption("7.2", "The recency-biased variants minus the baseline against the tokens seen: circles at the cpu "
              "preset's budgets (final checkpoints), dashed their fitted lines, diamonds at the original's scale (best "
              "checkpoint filled, final open); 95% Welch intervals. Chapter 6, Figure 6.3, adds the seeds.")

# %% [markdown]
# ## The original's two explanations

# %% tags=["hide-input"]
section("explanations")

# %% [markdown]
# ## What is open

# %% tags=["hide-input"]
section("open")
