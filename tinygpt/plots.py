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


def differences(table, ax=None, title="best val loss minus the baseline's (95% Welch interval)", width=MATCH_WIDTH):
    """Dot and interval per variant; the shaded band is what a 'matches' interval must fit in width."""
    ax = ax or plt.gca()
    t = table.dropna(subset=["diff"]).reset_index(drop=True)
    colours = {"better": "tab:green", "worse": "tab:red", "matches": "tab:blue", "inconclusive": "tab:gray"}
    for i, row in t.iterrows():
        ax.errorbar(row["diff"], i, xerr=[[row["diff"] - row.ci_lo], [row.ci_hi - row["diff"]]], fmt="o",
                    color=colours[row.verdict], capsize=3)
    ax.axvline(0, color="k", lw=1)
    ax.axvspan(-width / 2, width / 2, color="tab:blue", alpha=0.08, label=f"interval width < {width} nats")
    ax.set_yticks(range(len(t)), [f"{r.tag} ({r.verdict})" for r in t.itertuples()])
    ax.invert_yaxis()
    ax.set(xlabel="difference in best val loss (nats/char); < 0 is better", title=title)
    ax.legend(fontsize="small", loc="lower right")
    return ax
