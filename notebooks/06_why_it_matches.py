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
# # 6. Why the variants match the baseline
#
# ## Overview
# The original study ends with two guesses for why none of its modifications beat the baseline:
# 1. **the information is already there** — the residual stream carries, implicitly, what the
#    modifications add explicitly;
# 2. **the data are too small** — tiny Shakespeare cannot reward a better attention.
#
# This chapter puts every variant in one table against the baseline, then tests each guess with an
# experiment: linear probes from the baseline's residual stream to the quantities the variants
# inject (hypothesis 1), and the variants closest to an improvement trained on less and on more text
# (hypothesis 2). Ablations explain the odd results, and a last section places each variant beside
# its published relative. Every number below is computed from the runs; the rules that turn numbers
# into verdicts are stated before they are applied.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import tinygpt
from tinygpt.book import analysis, plots, probes, study
from tinygpt.book.experiments import ensure_runs, load_run_model, results_root
from tinygpt.book.notebook import environment
from tinygpt.book.results import MATCH_WIDTH, load_runs, welch
from tinygpt.checkpoint import write_json
from tinygpt.data import load_dataset

environment()
plots.setup()

# %% tags=["parameters"]
preset = "cpu"  # smoke (seconds, for tests), cpu (nanoGPT's CPU config) or gpu (nanoGPT's shakespeare_char config)
n_seeds = 3  # seeds per variant (chapters 02-04 train them; re-used here)
baseline_seeds = 5  # baseline seeds (chapter 01)
data_seeds = 2  # seeds per model and data size in the data-size experiment (hypothesis 2)
probe_batch = 32  # validation sequences captured for the linear probes
out_dir = ""  # results folder; "" means the repository's results/
device = "auto"  # auto (cuda if available), cpu or cuda
retrain = False  # True trains this chapter's own runs (data sizes) again
jobs = 2  # training runs in parallel (separate processes); 2 keeps a 2-core CPU busy
regime = True  # the regime experiment (longer training, longer context): its results are committed at cpu

# %%
names = study.ALL_NAMES  # every variant and control
study.check_parameters(preset, names, n_seeds, device)
study.check_parameters(preset, n_seeds=baseline_seeds)
study.check_parameters(preset, n_seeds=data_seeds)
root = out_dir or None
cfg = tinygpt.make_config(preset)
L, H, T = cfg.model.n_layer, cfg.model.n_head, cfg.model.block_size
summary = {"preset": preset, "match_width": MATCH_WIDTH}

# %% [markdown]
# ## 1. Every variant against the baseline (the noise floor)
# Best validation loss, mean ± std over seeds, and the difference to the baseline with its 95%
# Welch interval. **Rule:** a variant *matches* the baseline when the interval covers 0 and is
# narrower than the width printed below; it is *better* or *worse* when the interval lies wholly
# below or above 0; otherwise the result is *inconclusive* (too few seeds for the noise).

# %%
params = dict(preset=preset, n_seeds=n_seeds, baseline_seeds=baseline_seeds, regime=regime)
planned = study.chapter_runs("06_why_it_matches", params)  # the same list `book run` plans from
regime_runs = [r for r in planned if not r.need_model]  # hypothesis 3: only their losses are read
runs, table = study.train_and_compare([r for r in planned if r.need_model], jobs, False, root, device)
ensure_runs(regime_runs, jobs=jobs, root=root, device=device)
print(f"'matches' needs an interval narrower than {MATCH_WIDTH} nats that covers 0")
display(table.round(4))
fig, ax = plt.subplots(figsize=(9, 4.5))
plots.differences(table, ax)
plt.show()
summary["table"] = table.to_dict("records")
counts = table.verdict.value_counts().to_dict()

# %% [markdown]
# ## 2. Hypothesis 1: the information is already in the residual stream
# If the stream entering layer l already encodes how each of layer l's heads will look back (mean
# distance, spread, mean logit) and which span a window model would choose, a structure or window
# variant adds nothing new. We fit ridge probes from the baseline's residual stream at each token to
# those quantities and report R² on held-out sequences. The stream holds the position embedding, but
# a linear probe reads position only coarsely from it, so the main probe gets the stream together
# with a one-hot of the query position (`resid+position`); `resid` alone is shown too. Controls: the
# query position alone (distance statistics depend on where the query is) and shuffled targets (the
# floor).
#
# **Rule:** *supported* if the stream (with position) explains on average at least half of the
# variance (R² ≥ 0.5) of both the structure and the spans; *refuted* if its R² is below 0.25 for
# either; otherwise *inconclusive*. How much the stream adds beyond position alone is reported beside.

# %%
data = load_dataset("shakespeare_char")
idx = analysis.val_batch(data, T, batch=probe_batch, seed=1)
path = lambda tag, seed=0: runs[(runs.tag == tag) & (runs.seed == seed)].path.iloc[0]
cap_base = tinygpt.capture(load_run_model(path("baseline")), idx)
probe_rows = []
for features in ("resid", "resid+position", "position"):
    df = probes.probe_structure(cap_base, features=features)
    probe_rows.append(df.assign(target="structure", features=features))
probe_rows.append(probes.probe_structure(cap_base, shuffle=True).assign(target="structure", features="shuffled"))
window_caps = {}
for tag in ("soft_window", "hard_window"):
    window_caps[tag] = tinygpt.capture(load_run_model(path(tag)), idx)
    for features in ("resid", "resid+position", "position"):
        df = probes.probe_spans(cap_base, window_caps[tag], features=features)
        probe_rows.append(df.assign(target=f"{tag} span", stat="log span", features=features))
    df = probes.probe_spans(cap_base, window_caps[tag], shuffle=True)
    probe_rows.append(df.assign(target=f"{tag} span", stat="log span", features="shuffled"))
probe_df = pd.concat(probe_rows, ignore_index=True)
r2 = probe_df.groupby(["target", "stat", "features", "layer"]).r2.mean().reset_index()

plots.probe_r2(r2)
plt.show()

means = probe_df.groupby(["target", "features"]).r2.mean().unstack()
display(means.round(3))
struct, spans = means.loc["structure"], means.loc[[i for i in means.index if i.endswith("span")]].mean()
main = "resid+position"
if min(struct[main], spans[main]) >= 0.5:
    h1 = "supported"
elif min(struct[main], spans[main]) < 0.25:
    h1 = "refuted"
else:
    h1 = "inconclusive"
summary["h1"] = {"verdict": h1, "structure": struct.to_dict(), "spans": spans.to_dict(),
                 "per_layer": r2.to_dict("records")}
print(f"hypothesis 1: {h1}")

# %% [markdown]
# ## 3. Hypothesis 2: the data are too small
# The two variants whose mean difference to the baseline is lowest (closest to an improvement) and
# the baseline are trained on 25% and 50% of tiny Shakespeare's training split and on the complete
# works (about 4.5× more text, validated on held-out works); the 100% point re-uses the runs above.
# Differences are taken at each data size against the baseline trained on the same data.
#
# **Rule:** we fit the difference against log₂ of the training tokens (a slope in nats per doubling
# of data, with its 95% interval). *Supported* if some variant's slope is significantly negative
# (more data favours the variant); *refuted* if every variant's interval excludes a benefit of more
# than 0.005 nats per doubling; otherwise *inconclusive*.

# %%
candidates = (table.dropna(subset=["diff"]).query("tag in @tinygpt.VARIANTS").sort_values("diff").tag.head(2).tolist())
print(f"closest to an improvement: {candidates}")
size_runs = study.data_size_runs(preset, ["baseline"] + candidates, data_seeds)
ensure_runs(size_runs, jobs=jobs, retrain=retrain, root=root, device=device)
sizes = load_runs(preset, root, tags={r.name for r in size_runs})
full = runs[runs.tag.isin(["baseline"] + candidates)].copy()
full["tag"] = full.tag + "+frac1"
sizes = pd.concat([sizes, full], ignore_index=True)
sizes["model"], sizes["size"] = zip(*[t.split("+") for t in sizes.tag])
complete = load_dataset("shakespeare_complete")
train_tokens = {"frac0.25": 0.25 * data.train_tokens, "frac0.5": 0.5 * data.train_tokens,
                "frac1": data.train_tokens, "complete": complete.train_tokens}
sizes["train_tokens"] = sizes["size"].map(train_tokens)
size_rows, slopes = [], {}
for v in candidates:
    pts_x, pts_y = [], []
    for size, n_tok in train_tokens.items():
        a = sizes[(sizes.model == v) & (sizes["size"] == size)].val_loss_full
        b = sizes[(sizes.model == "baseline") & (sizes["size"] == size)].val_loss_full
        w = welch(a, b)
        size_rows.append({"variant": v, "size": size, "train_tokens": n_tok, "n": len(a), **w})
        pts_x += [np.log2(n_tok)] * len(a)
        pts_y += list(a - b.mean())
    fit = np.polyfit(pts_x, pts_y, 1, cov=True)
    slope, se = fit[0][0], np.sqrt(fit[1][0, 0])
    from scipy import stats as sst
    half = sst.t.ppf(0.975, len(pts_x) - 2) * se
    slopes[v] = {"slope": slope, "lo": slope - half, "hi": slope + half}
size_table = pd.DataFrame(size_rows)
display(size_table.round(4))
display(pd.DataFrame(slopes).T.round(4))
fig, ax = plt.subplots(figsize=(8, 4))
plots.data_size(size_table, ax)
plt.show()
if any(s["hi"] < 0 for s in slopes.values()):
    h2 = "supported"
elif all(s["lo"] > -0.005 for s in slopes.values()):
    h2 = "refuted"
else:
    h2 = "inconclusive"
summary["h2"] = {"verdict": h2, "candidates": candidates, "points": size_table.to_dict("records"), "slopes": slopes}
print(f"hypothesis 2: {h2}")

# %% [markdown]
# ## 4. The odd results, explained by ablations
# **structure_mlp's deficit.** The original's structure_mlp re-normalises the residual stream itself
# (post-norm). The pre-norm control keeps the features and drops that placement.

# %%
t = table.set_index("tag")
mlp = {k: {c: float(t.loc[k, c]) for c in ("mean", "std", "diff", "ci_lo", "ci_hi")}
       for k in ("structure_mlp", "structure_mlp_prenorm")}
display(pd.DataFrame(mlp).T.round(4))

# %% [markdown]
# **Gate magnitudes.** How far the learned gates move each head from its median gate (the log₂ of
# gate / median: 1 means a factor 2 up), for structure_gate and its structure-free control.

# %%
gate_caps = {tag: tinygpt.capture(load_run_model(path(tag)), idx) for tag in ("structure_gate", "output_gate")}
gate_rows = []
for tag, cap in gate_caps.items():
    g = np.concatenate([lc.gate.flatten().numpy() for lc in cap.layers])
    spread = np.log2(g / np.median(g))
    gate_rows.append({"variant": tag, "min": g.min(), "max": g.max(), "std of log2(g/median)": spread.std(),
                      "share beyond 2× either way": np.mean(np.abs(spread) >= 1)})
gates = pd.DataFrame(gate_rows)
display(gates.round(4))
fig, ax = plt.subplots(figsize=(8, 3.5))
for tag, cap in gate_caps.items():
    g = np.concatenate([lc.gate.flatten().numpy() for lc in cap.layers])
    ax.hist(np.log2(g / np.median(g)), bins=60, alpha=0.6, label=tag, density=True)
ax.set(xlabel="log₂(gate / median gate)", ylabel="density", title="how far the gates move the heads (seed 0)")
ax.legend()
plt.show()

# %% [markdown]
# **Do hard-window spans shrink where the baseline looks near?** For every token of the probe batch:
# the shortest span over the hard window's heads against the shortest mean look-back distance over
# the baseline's heads, layer by layer (Spearman correlation over tokens, queries in the second half
# of the context).

# %%
from scipy.stats import spearmanr

hw = window_caps["hard_window"]
rho_rows = []
for layer in range(L):
    span = hw.layers[layer].span[:, :, T // 2:].amin(1).flatten().numpy()
    near = cap_base.layers[layer].stats["mean_distance"][:, :, T // 2:].amin(1).flatten().numpy()
    rho = spearmanr(span, near).statistic if span.std() > 0 else float("nan")
    rho_rows.append({"layer": layer, "spearman rho": rho, "median span (tokens)": np.median(span),
                     "baseline: median of the nearest head's distance (tokens)": np.median(near)})
rho = pd.DataFrame(rho_rows)
display(rho.round(3))
summary["ablations"] = {"structure_mlp": mlp, "gates": gates.to_dict("records"), "spans": rho.to_dict("records")}

# %% [markdown]
# ## 5. The published relatives
# Each variant has a published relative that was shown to help at scale. What they found, and what
# our runs say about this model.

# %%
def said(tag):
    r = t.loc[tag]
    return f"{r['diff']:+.4f} nats [{r.ci_lo:+.4f}, {r.ci_hi:+.4f}], {r.verdict}"


def reads(tag):
    """What this run's verdict says of the mechanism, in words the verdict rule allows."""
    return {"better": "helps this model", "worse": "hurts this model",
            "matches": "makes no measurable difference here",
            "inconclusive": "has an effect our seeds cannot resolve"}[t.loc[tag, "verdict"]]


display(Markdown(f"""
- **ALiBi** (Press et al. 2021, arXiv 2108.12409) replaces position embeddings by fixed per-head
  linear distance penalties and extrapolates to longer contexts than trained on. Here it is added on
  top of learned position embeddings, at a fixed context, so extrapolation is not tested; what
  remains is a built-in preference for near keys, which {reads('alibi')}: `alibi` {said('alibi')};
  the query-dependent `soft_window` {said('soft_window')}. The probes above say how much of a head's
  look-back distance the baseline's stream already predicts (structure R² {struct[main]:.2f}).
- **Adaptive Attention Span** (Sukhbaatar et al. 2019, arXiv 1905.07799) learns one span per head to
  save memory and compute in character models with contexts of thousands of tokens, at equal loss.
  `learned_span` {said('learned_span')}; the query-dependent `hard_window` {said('hard_window')}.
  The savings need long contexts: chapter 2 measures how many tiles a block-sparse kernel would skip
  at our context of {T}.
- **Forgetting Transformer** (Lin et al. 2025, arXiv 2503.02130) adds a data-dependent forget gate,
  a learned, query- and key-dependent decay of the logits with distance, and reports gains in
  language modelling at hundreds of millions of parameters and long contexts. Our `soft_window` is
  the closest relative (a decay slope chosen by the query), and it {reads('soft_window')}:
  {said('soft_window')}.
- **Gated Attention for LLMs** (Qiu et al. 2025, arXiv 2505.06708) finds that a sigmoid gate on each
  head's output improves 1.7 B-parameter models and removes attention sinks, benefits it reports
  with billions of tokens. Here the plain gate {reads('output_gate')} (`output_gate`
  {said('output_gate')}) and the structure-driven gate {reads('structure_gate')} (`structure_gate`
  {said('structure_gate')}); the gate magnitudes above show how far each moves its heads.
- **Selective Attention** (Leviathan et al. 2024, arXiv 2410.02703) lets a token mask later tokens'
  attention to earlier ones, accumulated over the sequence, and improves perplexity and memory at
  scale. `key_importance` — a learned per-key logit offset carried across layers — is its closest
  relative here, and it {reads('key_importance')}: {said('key_importance')}. The original author
  expected no gain, since a model can move a key's vector where queries ignore it.
"""))

# %% [markdown]
# ## Summary

# %%
summary["verdict_counts"] = counts
write_json(results_root(root) / preset / "summary.json", summary)
display(Markdown(
    f"- Of {len(table) - 1} variants and controls at the **{preset}** preset: "
    + ", ".join(f"{n} {k}" for k, n in counts.items())
    + f" (95% Welch intervals; 'matches' needs width < {MATCH_WIDTH}).\n"
    f"- **Hypothesis 1 (information already there): {h1}.** The baseline's residual stream predicts the next "
    f"layer's attention structure with mean held-out R² {struct[main]:.2f} (stream alone {struct['resid']:.2f}, "
    f"position alone {struct['position']:.2f}, shuffled {struct['shuffled']:.2f}) and the learned log spans with "
    f"R² {spans[main]:.2f} (stream alone {spans['resid']:.2f}, position alone {spans['position']:.2f}).\n"
    f"- **Hypothesis 2 (data too small): {h2}.** Slopes of the difference per doubling of data: "
    + "; ".join(f"{v} {s['slope']:+.4f} [{s['lo']:+.4f}, {s['hi']:+.4f}]" for v, s in slopes.items()) + ".\n"
    f"- structure_mlp: post-norm {mlp['structure_mlp']['diff']:+.4f}, pre-norm control "
    f"{mlp['structure_mlp_prenorm']['diff']:+.4f} nats from the baseline."
))
