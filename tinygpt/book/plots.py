"""The book's figures. Each function draws on an axis (or makes a figure) and labels it fully."""

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .results import MATCH_WIDTH


def setup():
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.autolayout": True})


def loss_curves(histories, ax=None, split="val_loss", title=None, tags=None):
    """Mean (line) and min–max over seeds (band) of a loss against iteration, one colour per tag."""
    ax = ax or plt.gca()
    tags = tags or list(dict.fromkeys(histories.tag))
    for tag in tags:
        g = histories[histories.tag == tag].groupby("iter")[split]
        m = g.mean()
        line, = ax.plot(m.index, m.values, label=f"{tag} (n={histories[histories.tag == tag].seed.nunique()})")
        ax.fill_between(m.index, g.min().values, g.max().values, color=line.get_color(), alpha=0.2)
    ax.set(xlabel="iteration", ylabel=f"{split.replace('_', ' ')} (nats/char)",
           title=title or f"{split.replace('_', ' ')} during training")
    ax.legend(fontsize="small")
    return ax


def attention_map(probs, ax=None, span=None, title="", tokens=None):
    """One head's (T, T) weights; with span (T,), the window edge d = σ − 1 is drawn."""
    ax = ax or plt.gca()
    T = probs.shape[-1]
    ax.imshow(np.asarray(probs), cmap="magma", vmin=0, aspect="equal", interpolation="nearest")
    if span is not None:
        i = np.arange(T)
        ax.plot(np.clip(i - np.asarray(span) + 1, 0, None), i, color="cyan", lw=1, label="window edge (d = σ−1)")
        ax.legend(loc="lower left", fontsize="x-small")
    ax.set(xlabel="key position j", ylabel="query position i", title=title)
    if tokens is not None and T <= 40:
        ax.set_xticks(range(T), [repr(c)[1:-1] for c in tokens], fontsize=6)
        ax.set_yticks(range(T), [repr(c)[1:-1] for c in tokens], fontsize=6)
    ax.grid(False)
    return ax


def attention_grid(cap, layers, heads, b=0, tokens=None, span=False, suptitle=""):
    """Weights of several (layer, head) pairs side by side, from a tinygpt.capture result."""
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(2.6 * len(heads), 2.6 * len(layers)), squeeze=False)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            lc = cap.layers[layer]
            s = lc.span[b, head].cpu() if span and lc.span is not None else None
            attention_map(lc.probs[b, head].cpu(), axes[r, c], s, f"layer {layer}, head {head}", tokens)
            if c:
                axes[r, c].set_ylabel("")
            if r < len(layers) - 1:
                axes[r, c].set_xlabel("")
    fig.suptitle(suptitle)
    return fig


def per_head(values, ax=None, title="", ylabel="", kind="box"):
    """values: dict layer → (H, N) array. One box per head, grouped by layer."""
    import pandas as pd
    rows = [{"layer": layer, "head": h, "value": v}
            for layer, arr in values.items() for h in range(arr.shape[0]) for v in np.asarray(arr[h]).ravel()]
    df = pd.DataFrame(rows)
    ax = ax or plt.gca()
    if kind == "box":
        sns.boxplot(df, x="layer", y="value", hue="head", ax=ax, showfliers=False, palette="viridis")
    else:
        sns.barplot(df, x="layer", y="value", hue="head", ax=ax, palette="viridis", errorbar="sd")
    ax.set(xlabel="layer", ylabel=ylabel, title=title)
    ax.legend(title="head", fontsize="x-small", ncols=2)
    return ax


def differences(table, ax=None, title="best val loss minus the baseline's (95% Welch interval)", width=MATCH_WIDTH,
                runs=None, metric="val_loss_full"):
    """Dot and interval per variant; the shaded band is what a 'matches' interval must fit in width.

    With `runs` (the runs table), each seed's difference to the baseline's mean is a small dot below its row.
    """
    ax = ax or plt.gca()
    t = table.dropna(subset=["diff"]).reset_index(drop=True)
    colours = {"better": "tab:green", "worse": "tab:red", "matches": "tab:blue", "inconclusive": "tab:gray"}
    base = runs[runs.tag == "baseline"][metric].mean() if runs is not None else None
    for i, row in t.iterrows():
        ax.errorbar(row["diff"], i, xerr=[[row["diff"] - row.ci_lo], [row.ci_hi - row["diff"]]], fmt="o",
                    color=colours[row.verdict], capsize=3)
        if runs is not None:
            seeds = runs[runs.tag == row.tag][metric] - base
            ax.scatter(seeds, [i + 0.28] * len(seeds), s=10, color=colours[row.verdict], alpha=0.6, zorder=3)
    ax.axvline(0, color="k", lw=1)
    ax.axvspan(-width / 2, width / 2, color="tab:blue", alpha=0.08, label=f"interval width < {width} nats")
    ax.set_yticks(range(len(t)), [f"{r.tag} ({r.verdict})" for r in t.itertuples()])
    ax.invert_yaxis()
    ax.set(xlabel="difference in best val loss (nats/char); < 0 is better", title=title)
    ax.legend(fontsize="small", loc="lower right")
    return ax


PROBE_COLOURS = {"resid+position": "tab:green", "resid": "tab:blue", "position": "tab:orange",
                 "token+position": "tab:purple", "random init": "tab:brown", "shuffled": "tab:gray"}


def probe_r2(r2, title="linear probes from the baseline's residual stream (mean over heads)"):
    """r2: rows (target, stat, features, layer, r2). One panel per structure statistic, one for the spans."""
    stats = [s for s in ("mean_distance", "std_distance", "mean_logit") if s in set(r2.stat)]
    fig, axes = plt.subplots(1, len(stats) + 1, figsize=(4.3 * (len(stats) + 1), 3.8), sharey=True)
    for ax, stat in zip(axes, stats):
        for features, colour in PROBE_COLOURS.items():
            d = r2[(r2.target == "structure") & (r2.stat == stat) & (r2.features == features)]
            ax.plot(d.layer, d.r2, color=colour, marker="o", label=features)
        ax.set_title(stat.replace("_", " "))
    span_targets = sorted(t for t in set(r2.target) if t.endswith("span"))
    for target, ls in zip(span_targets, ("-", "--", ":")):
        for features, colour in PROBE_COLOURS.items():
            d = r2[(r2.target == target) & (r2.features == features)]
            axes[-1].plot(d.layer, d.r2, ls, color=colour, marker="o", label=f"{target.split()[0]}: {features}")
    axes[-1].set_title("learned log span")
    for ax in axes:
        ax.set(xlabel="layer (probe reads the stream entering it)", ylabel="held-out R²")
        ax.axhline(0, color="k", lw=0.8)
        ax.legend(fontsize="x-small")
    fig.suptitle(title)
    return fig


def data_size(points, ax=None, title="difference to the baseline against data size (95% Welch)"):
    """points: rows (variant, train_tokens, diff, lo, hi)."""
    ax = ax or plt.gca()
    for v in dict.fromkeys(points.variant):
        d = points[points.variant == v].sort_values("train_tokens")
        ax.errorbar(d.train_tokens, d["diff"], yerr=[d["diff"] - d.lo, d.hi - d["diff"]], marker="o", capsize=3,
                    label=v)
    ax.axhline(0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="training tokens (log scale; the largest is the complete works)",
           ylabel="best val loss − baseline (nats/char)", title=title)
    ax.legend()
    return ax


def comparison(runs, table, tags):
    """A chapter's headline figure: validation curves of `tags` and each one's difference to the baseline."""
    from .results import load_histories
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
    loss_curves(load_histories(runs.path), axes[0], "val_loss", "validation loss", tags=tags)
    axes[0].set_ylim(top=runs.val_loss_full.max() + 0.4)
    differences(table, axes[1])
    return fig
