"""The book's figures. Each function draws on an axis (or makes a figure) and labels it fully.

House rules every function here keeps (tests/test_figures.py checks the first three):
- one colour and marker per variant for the whole book: `STYLE` / `style(tag)`;
- legends never over data: beside the axes (`legend_beside`), or one per figure below a grid
  (`figure_legend`); never `loc="best"` inside a crowded axis;
- integer quantities (layer, head, position) get integer ticks (`integer_ticks`), heat maps a colourbar;
- figures fit the book's ~780 px column: at most `MAX_WIDTH` inches wide at 90 dpi, so every label
  is drawn at its real size. Wide grids are stacked into rows instead.
"""

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator, NullFormatter

from .results import MATCH_WIDTH

MAX_WIDTH = 8.6  # inches: 774 px at the book's 90 dpi, the column's width

# seaborn's colour-blind palette, one entry per variant, learnt on page 1 and kept to the end. Families
# share a marker shape (windows: circles/squares, gates: triangles, structure: diamonds/pentagons);
# each control sits next to the variant it isolates.
_C = sns.color_palette("colorblind", 10)
STYLE = {
    "baseline": dict(color="0.25", marker="s"),
    "soft_window": dict(color=_C[0], marker="o"),
    "alibi": dict(color=_C[9], marker="o"),
    "hard_window": dict(color=_C[1], marker="s"),
    "learned_span": dict(color=_C[5], marker="s"),
    "key_importance": dict(color=_C[4], marker="P"),
    "structure_gate": dict(color=_C[3], marker="^"),
    "output_gate": dict(color="#332288", marker="v"),  # Tol's indigo: the palette's grey is too close to the baseline
    "structure_mlp": dict(color=_C[2], marker="D"),
    "structure_mlp_prenorm": dict(color=_C[8], marker="d"),
    "structure_embedding": dict(color=_C[6], marker="p"),
}
_FALLBACK = dict(color="0.5", marker="X")


def style(tag):
    """Colour and marker of a variant, or of any run tag derived from one ("soft_window+iters4000")."""
    if tag in STYLE:
        return dict(STYLE[tag])
    base = str(tag).split("+")[0].split("@")[0]
    return dict(STYLE.get(base, _FALLBACK))


def setup():
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.autolayout": True})


# ----------------------------------------------------------------------------- layout helpers

def legend_beside(ax, title=None, **kw):
    """The axis' legend outside it, to the right: it can never cover a data point."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize="small",
                     title=title, title_fontsize="small", **kw)


def figure_legend(fig, axes, ncols=4, title=None):
    """One legend for a whole grid, under it (duplicates across panels merged)."""
    seen = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
        if ax.get_legend():
            ax.get_legend().remove()
    fig.tight_layout()
    return fig.legend(seen.values(), seen.keys(), loc="upper center", bbox_to_anchor=(0.5, 0), ncols=ncols,
                      fontsize="small", title=title, title_fontsize="small", frameon=False)


def integer_ticks(ax, x=True, y=False, nbins="auto"):
    """Ticks at whole numbers only (layers, heads, positions); nbins caps their number on small panels."""
    if x:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))
    if y:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))
    return ax


def caption(number, text):
    """A figure's numbered caption, shown right under it: **Figure 2.3.** text."""
    from IPython.display import Markdown, display
    display(Markdown(f"**Figure {number}.** {text}"))


# ----------------------------------------------------------------------------- losses

def loss_curves(histories, ax=None, split="val_loss", title=None, tags=None, legend=True):
    """Mean (line) and min–max over seeds (band) of a loss against iteration, one style per tag."""
    ax = ax or plt.gca()
    tags = tags or list(dict.fromkeys(histories.tag))
    for tag in tags:
        h = histories[histories.tag == tag]
        g = h.groupby("iter")[split]
        m = g.mean()
        st = style(tag)
        ax.plot(m.index, m.values, color=st["color"], marker=st["marker"], ms=3, markevery=max(1, len(m) // 8),
                label=f"{tag} (n={h.seed.nunique()})")
        ax.fill_between(m.index, g.min().values, g.max().values, color=st["color"], alpha=0.15, lw=0)
    ax.set(xlabel="iteration", ylabel=f"{split.replace('_', ' ')} (nats/char)",
           title=title or f"{split.replace('_', ' ')} during training")
    if legend:
        legend_beside(ax)
    return ax


def train_val_curves(hist, tag, ax, title=None, legend=True):
    """Training and validation loss of one tag against iteration: mean over seeds, min–max band."""
    g = hist[hist.tag == tag].groupby("iter")
    for split, colour, ls in (("train_loss", "0.35", "--"), ("val_loss", style(tag)["color"], "-")):
        m = g[split].mean()
        ax.plot(m.index, m.values, color=colour, ls=ls, label=split.replace("_", " "))
        ax.fill_between(m.index, g[split].min().values, g[split].max().values, color=colour, alpha=0.2, lw=0)
    ax.set(xlabel="iteration", ylabel="loss (nats/char)", title=title or tag)
    if legend:
        legend_beside(ax)
    return ax


def gap_over_training(gap, ax=None, title="difference to the baseline during training"):
    """Each tag's val loss minus the baseline's during training (mean, 95% Welch band), in the book's styles.

    gap: tinygpt.book.regime.gap_over_training(load_histories(...)).
    """
    ax = ax or plt.gca()
    for tag, g in gap.groupby("tag", sort=False):
        st = style(tag)
        ax.plot(g["iter"], g["diff"], color=st["color"], marker=st["marker"], ms=4, label=tag)
        ax.fill_between(g["iter"], g.lo, g.hi, color=st["color"], alpha=0.15, lw=0)
    ax.axhline(0, color="k", lw=1)
    ax.set(xlabel="iteration", ylabel="val loss − baseline's (nats/char)", title=title or "")
    legend_beside(ax, title=f"n = {', '.join(map(str, sorted(set(gap.n))))} seeds")
    return ax


# ----------------------------------------------------------------------------- attention

def attention_map(probs, ax=None, span=None, title="", tokens=None, vmax=None):
    """One head's (T, T) weights; with span (T,), the window edge d = σ − 1 is drawn. Returns the image."""
    ax = ax or plt.gca()
    T = probs.shape[-1]
    im = ax.imshow(np.asarray(probs), cmap="magma", vmin=0, vmax=vmax, aspect="equal", interpolation="nearest")
    if span is not None:
        i = np.arange(T)
        # thin and dashed, so the weights next to it stay visible
        ax.plot(np.clip(i - np.asarray(span) + 1, 0, None), i, color="#7fdfff", lw=0.7, ls=(0, (3, 2)), alpha=0.8,
                label="window edge (d = σ−1): keys left of it are beyond the span")
        ax.set_xlim(-0.5, T - 0.5)
        ax.set_ylim(T - 0.5, -0.5)
    ax.set(xlabel="key position j", ylabel="query position i", title=title)
    if tokens is not None and T <= 40:
        ax.set_xticks(range(T), [repr(c)[1:-1] for c in tokens], fontsize=6)
        ax.set_yticks(range(T), [repr(c)[1:-1] for c in tokens], fontsize=6)
    else:
        integer_ticks(ax, x=True, y=True, nbins=4)
    ax.grid(False)
    return im


def attention_grid(cap, layers, heads, b=0, tokens=None, span=False, suptitle=""):
    """Weights of several (layer, head) pairs, one row per layer, one colourbar and one legend for the grid."""
    ncol = len(heads)
    side = min(2.3, (MAX_WIDTH - 1.2) / ncol)  # + 1 in for the colourbar: 8.4 in at most, as the column
    fig, axes = plt.subplots(len(layers), ncol, figsize=(side * ncol + 1.0, side * len(layers) + 0.8), squeeze=False,
                             layout="constrained")
    vmax = max(float(cap.layers[layer].probs[b, head].max()) for layer in layers for head in heads)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            lc = cap.layers[layer]
            s = lc.span[b, head].cpu() if span and lc.span is not None else None
            im = attention_map(lc.probs[b, head].cpu(), axes[r, c], s, f"layer {layer}, head {head}", tokens, vmax)
            if c:
                axes[r, c].set_ylabel("")
            if r < len(layers) - 1:
                axes[r, c].set_xlabel("")
    fig.colorbar(im, ax=axes, label="attention weight", shrink=0.8)
    if span:
        h, lab = axes[0, 0].get_legend_handles_labels()
        fig.legend(h[:1], lab[:1], loc="outside lower center", fontsize="small", frameon=False)
    fig.suptitle(suptitle)
    return fig


# ----------------------------------------------------------------------------- per head

def _head_palette(n):
    return sns.color_palette("viridis", n)


def per_head(values, ax=None, title="", ylabel="", kind="box", legend=True):
    """values: dict layer → (H, N) array. One box per head, grouped by layer; the head legend beside the axis."""
    import pandas as pd
    rows = [{"layer": layer, "head": h, "value": v}
            for layer, arr in values.items() for h in range(arr.shape[0]) for v in np.asarray(arr[h]).ravel()]
    df = pd.DataFrame(rows)
    ax = ax or plt.gca()
    n_head = df["head"].nunique()
    if kind == "box":
        sns.boxplot(df, x="layer", y="value", hue="head", ax=ax, showfliers=False, palette=_head_palette(n_head))
    else:
        sns.barplot(df, x="layer", y="value", hue="head", ax=ax, palette=_head_palette(n_head), errorbar="sd")
    ax.set(xlabel="layer", ylabel=ylabel, title=title)
    if legend:
        legend_beside(ax, title="head")
    elif ax.get_legend():
        ax.get_legend().remove()
    return ax


def per_head_grid(panels, kind="box", suptitle="", height=2.6):
    """Several per_head panels stacked in rows (readable at the column's width), one head legend.

    panels: list of (values, title, ylabel).
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(MAX_WIDTH - 1.2, height * len(panels)), squeeze=False)
    for ax, (values, title, ylabel) in zip(axes[:, 0], panels):
        per_head(values, ax, title, ylabel, kind)
    for ax in axes[1:, 0]:
        ax.get_legend().remove()
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def gate_correlation(corr, variants, stats=("mean_distance", "std_distance", "mean_logit")):
    """r(gate, structure) per (layer, head), one heat map per variant in rows, with a colourbar.

    corr: rows (variant, layer, head, stat, r).
    """
    fig, axes = plt.subplots(len(variants), 1, figsize=(MAX_WIDTH - 0.6, 1.9 * len(variants) + 0.6), squeeze=False,
                             layout="constrained")
    for ax, tag in zip(axes[:, 0], variants):
        pivot = corr[corr.variant == tag].pivot_table(index="stat", columns=["layer", "head"], values="r")
        pivot = pivot.loc[[s for s in stats if s in pivot.index]]
        im = ax.imshow(pivot.values, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto")
        ax.set_yticks(range(len(pivot.index)), [s.replace("_", " ") for s in pivot.index])
        ax.set_xticks(range(pivot.shape[1]), [f"L{a}H{b}" for a, b in pivot.columns], fontsize=8)
        ax.set(title=f"{tag}: r(gate, structure)", xlabel="layer L, head H")
        ax.grid(False)
    fig.colorbar(im, ax=axes, label="Pearson r over tokens")
    return fig


# ----------------------------------------------------------------------------- comparisons

def differences(table, ax=None, title="difference to the baseline (95% Welch)", width=MATCH_WIDTH,
                runs=None, metric="val_loss_full"):
    """Dot and interval per variant, in its book colour; with `runs`, each seed as a small dot beside it.

    The shaded band is what a 'matches' interval must fit in. The verdict is in the row label.
    """
    ax = ax or plt.gca()
    t = table.dropna(subset=["diff"]).reset_index(drop=True)
    ax.axvspan(-width / 2, width / 2, color="0.5", alpha=0.12, lw=0)
    ax.axvline(0, color="k", lw=1)
    base = None
    if runs is not None:
        base = runs.loc[runs.tag == "baseline", metric].mean()
    for i, row in t.iterrows():
        st = style(row.tag)
        ax.errorbar(row["diff"], i, xerr=[[row["diff"] - row.ci_lo], [row.ci_hi - row["diff"]]], fmt=st["marker"],
                    color=st["color"], capsize=3, ms=7)
        if base is not None:
            seeds = runs.loc[runs.tag == row.tag, metric].to_numpy() - base
            ax.scatter(seeds, np.full(len(seeds), i + 0.28), s=12, color=st["color"], alpha=0.7, lw=0)
    ax.set_yticks(range(len(t)), [f"{r.tag} ({r.verdict})" for r in t.itertuples()])
    ax.set_ylim(len(t) - 0.4, -0.6)
    ax.set(xlabel=f"difference in best val loss (nats/char); < 0 is better\n"
                  f"(shaded: {width} nats wide, the most a 'matches' interval may span)", title=title)
    return ax


def comparison(runs, table, tags):
    """A chapter's headline figure, two rows: validation curves of `tags`, and each one's difference to the baseline
    (dots: the seeds)."""
    from .results import load_histories
    n = max(1, len(table.dropna(subset=["diff"])))
    fig, axes = plt.subplots(2, 1, figsize=(MAX_WIDTH - 0.4, 3.4 + 0.45 * n + 1.4),
                             gridspec_kw={"height_ratios": [3.4, 0.45 * n + 0.6]})
    loss_curves(load_histories(runs.path), axes[0], "val_loss", "validation loss during training", tags=tags)
    axes[0].set_ylim(top=runs.val_loss_full.max() + 0.4)
    differences(table, axes[1], runs=runs)
    return fig


def knob_effect(ax, base_value, base_losses, values, losses, xlabel, title="", log=True, integer=False):
    """Best val loss against one knob's value: the baseline seeds (dots, mean ± std, band ±2 std) and one run per
    changed value."""
    mu, sd = np.mean(base_losses), np.std(base_losses, ddof=1)
    ax.axhspan(mu - 2 * sd, mu + 2 * sd, color="0.5", alpha=0.15, lw=0, label="baseline mean ± 2 std")
    b = STYLE["baseline"]
    ax.scatter([base_value] * len(base_losses), base_losses, color=b["color"], s=12, alpha=0.6, label="baseline seeds")
    ax.errorbar(base_value, mu, yerr=sd, fmt=b["marker"], color=b["color"], capsize=4, label="baseline mean ± std")
    xs = sorted([*values, base_value])
    ys = [mu if x == base_value else losses[values.index(x)] for x in xs]
    ax.plot(xs, ys, color="tab:blue", lw=1, alpha=0.6)
    ax.scatter(values, losses, color="tab:blue", marker="o", s=40, zorder=3, label="changed shape (1 seed)")
    if log:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel="best val loss (nats/char)", title=title)
    return ax


def knob_grid(knobs, base, bl_losses, runs, ncols=3, preset=""):
    """One knob_effect panel per knob in a grid readable at the column's width, one legend for all."""
    nrows = -(-len(knobs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(MAX_WIDTH, 2.9 * nrows + 0.6), sharey=True, squeeze=False)
    for ax, (knob, unit) in zip(axes.flat, knobs.items()):
        r = runs[runs.knob == knob]
        knob_effect(ax, base[knob], bl_losses, r.value.tolist(), r.val_loss_full.tolist(), f"{knob} ({unit})",
                    title=knob, log=knob != "dropout")
    for ax in axes.flat[len(knobs):]:
        ax.set_visible(False)
    for ax in axes[:, 1:].flat:
        ax.set_ylabel("")
    if preset:
        fig.suptitle(f"best validation loss when one knob moves ({preset} preset)")
    figure_legend(fig, axes, ncols=2)
    return fig


def cost_scatter(runs, bl, base, knob_colours, preset=""):
    """Best val loss against parameters (top) and training time (bottom); labels give each knob's value."""
    fig, axes = plt.subplots(2, 1, figsize=(MAX_WIDTH - 1.6, 7.2), sharey=True)
    pts = runs.sort_values("val_loss_full").reset_index(drop=True)
    pts["marker"] = ["^" if v > base[k] else "v" for k, v in zip(pts.knob, pts.value)]
    b = STYLE["baseline"]
    for ax, (col, xlabel) in zip(axes, [("params", "parameters (count, log scale)"),
                                        ("elapsed_s", "training time per run (s)")]):
        ax.scatter(bl[col], bl.val_loss_full, color=b["color"], marker=b["marker"], s=25)
        for i, row in pts.iterrows():  # label sides alternate down the loss axis so neighbours do not collide
            ax.scatter(row[col], row.val_loss_full, color=knob_colours[row.knob], marker=row.marker, s=50, zorder=3)
            ax.annotate(f"{row.value:g}", (row[col], row.val_loss_full), fontsize=8, va="center",
                        xytext=(-7 if i % 2 else 7, 0), textcoords="offset points", ha="right" if i % 2 else "left",
                        color=knob_colours[row.knob])
        ax.set(xlabel=xlabel, ylabel="best val loss (nats/char)")
        ax.margins(x=0.12, y=0.08)  # room for the value labels at the edges (they were clipped)
    axes[0].set_xscale("log")
    axes[0].xaxis.set_minor_formatter(NullFormatter())  # 2×10⁴, 3×10⁴, ... labels collide
    axes[0].set_title("best val loss vs parameter count")
    axes[1].set_title("best val loss vs training time")
    handles = [plt.Line2D([], [], color=b["color"], marker=b["marker"], ls="", label="baseline seeds")]
    handles += [plt.Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in knob_colours.items()]
    handles += [plt.Line2D([], [], color="k", marker=m, ls="", label=f"knob {w} (label: value)")
                for m, w in (("^", "raised"), ("v", "lowered"))]
    axes[0].legend(handles=handles, fontsize="small", title="knob changed", title_fontsize="small", loc="upper left",
                   bbox_to_anchor=(1.02, 1), borderaxespad=0)
    if preset:
        fig.suptitle(f"cost of each shape ({preset} preset)")
    return fig


# ----------------------------------------------------------------------------- chapter-specific panels

def key_importance(spread, per_char, top=12):
    """Spread of ι per layer (top), and the `top` most suppressed and most favoured key characters (bottom)."""
    fig, axes = plt.subplots(2, 1, figsize=(MAX_WIDTH - 1.0, 6.4), gridspec_kw={"height_ratios": [1, 1.2]})
    st = style("key_importance")
    axes[0].bar(range(len(spread)), spread, color=st["color"])
    axes[0].set(xlabel="layer", ylabel="std of ι (logits)", title="spread of the key importance per layer")
    integer_ticks(axes[0])
    per_char = per_char.sort_values()
    shown = per_char if len(per_char) <= 2 * top else per_char.iloc[list(range(top)) + list(range(-top, 0))]
    labels = [repr(c)[1:-1] if c != " " else "␣" for c in shown.index]
    colours = [_C[3] if v < 0 else _C[0] for v in shown.values]  # colour-blind safe: vermillion down, blue up
    axes[1].bar(range(len(shown)), shown.values, color=colours)
    axes[1].set_xticks(range(len(shown)), labels, fontsize=11, family="monospace")
    axes[1].axhline(0, color="k", lw=0.8)
    what = f"the {top} lowest and {top} highest" if len(per_char) > 2 * top else "every character"
    axes[1].set(xlabel="key character (␣ is a space)", ylabel="mean ι, last layer (logits)",
                title=f"importance per key character: {what}")
    axes[1].grid(False, axis="x")
    return fig


def structure_features(feats, H, layers, position_axis_label="position in the sequence (tokens)"):
    """structure_mlp's 2H features (rel then sd of each head) along one sequence: one panel per layer,
    colour = head, solid = rel, dashed = sd; one legend for the grid."""
    fig, axes = plt.subplots(len(layers), 1, figsize=(MAX_WIDTH - 1.6, 2.7 * len(layers) + 0.3), squeeze=False,
                             sharex=True)
    pal = _head_palette(H)
    for ax, layer in zip(axes[:, 0], layers):
        f = np.asarray(feats[layer])  # (T, 2H)
        for h in range(H):
            ax.plot(f[:, h], color=pal[h], lw=1.3, label=f"head {h}: rel (how far back)")
            ax.plot(f[:, H + h], color=pal[h], lw=1.3, ls="--", label=f"head {h}: sd (how widely)")
        ax.set(ylabel="feature (after LayerNorm)", title=f"structure_mlp, layer {layer}")
        integer_ticks(ax)
    axes[-1, 0].set_xlabel(position_axis_label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = list(range(0, 2 * H, 2)) + list(range(1, 2 * H, 2))
    axes[0, 0].legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left",
                      bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize="small")
    return fig


def signal_sizes(sig, ax=None, title="structure_embedding: additions (seed 0)"):
    """RMS per layer of the additive changes structure_embedding makes, beside the attention output's own."""
    ax = ax or plt.gca()
    cols = [c for c in sig.columns if c != "layer"]
    x = np.arange(len(sig))
    w = 0.8 / len(cols)
    pal = sns.color_palette("colorblind", len(cols) + 1)[1:]
    for k, c in enumerate(cols):
        colour = "0.35" if c == "attention output" else pal[k]
        ax.bar(x + (k - (len(cols) - 1) / 2) * w, sig[c], w, label=c, color=colour)
    ax.set_xticks(x, sig["layer"])
    ax.set(xlabel="layer", ylabel="RMS (stream units)", title=title)
    legend_beside(ax)
    return ax
