"""Chapter 6's figures: the gap against training at both scales, over-fitting, the context, and the hypotheses.

The house rules of plots.py hold here too (one style per variant, legends off the data, the column's width).
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from .plots import MAX_WIDTH, figure_legend, integer_ticks, legend_beside, loss_curves, style


def _bars(ax, x, d, **kw):
    return ax.errorbar(x, d["diff"], yerr=[d["diff"] - d.lo, d.hi - d["diff"]], capsize=3, **kw)


def gap_by_tokens(points, seeds, ax, target=None, gpu=None, gpu_seeds=None, fits=None):
    """Each variant's difference to the baseline against the tokens seen, at both scales, on one axis.

    points: regime.by_budget rows at the cpu preset (variant, tokens, diff, lo, hi, base_mean, iters); seeds:
    rows (variant, tokens, diff) of single seeds; gpu: rows (variant, tokens, diff, lo, hi, checkpoint) of the
    gpu scale, checkpoint "best" (filled) or "final" (open); gpu_seeds likewise; fits: h3 fits, drawn as dashed
    lines from the longest budget to `target` (the original's tokens, a grey line).
    """
    variants = list(dict.fromkeys([*points.variant, *([] if gpu is None else gpu.variant)]))
    for i, v in enumerate(variants):
        st, shift = style(v), 1.07 ** (i - (len(variants) - 1) / 2)  # side by side: bars and dots stay visible
        g = points[points.variant == v].sort_values("tokens")
        if len(g):
            _bars(ax, g.tokens * shift, g, color=st["color"], marker=st["marker"], ms=5)
            s = seeds[seeds.variant == v]
            ax.scatter(s.tokens * shift * 1.03, s["diff"], s=9, color=st["color"], alpha=0.6, lw=0, zorder=3)
        f = (fits or {}).get(v)
        if f and target and len(g):
            x = np.array([g.tokens.max(), target])
            ax.plot(x * shift, f["intercept"] + f["slope"] * np.log2(x), "--", color=st["color"], lw=1, alpha=0.8)
        for kind, face in (("best", st["color"]), ("final", "white")):
            d = gpu[(gpu.variant == v) & (gpu.checkpoint == kind)] if gpu is not None else []
            if len(d):
                _bars(ax, d.tokens * shift, d, color=st["color"], marker="D", ms=7, mfc=face, ls="")
                s = gpu_seeds[(gpu_seeds.variant == v) & (gpu_seeds.checkpoint == kind)]
                ax.scatter(s.tokens * shift * 1.03, s["diff"], s=9, color=st["color"], alpha=0.6, lw=0, zorder=3)
    ax.axhline(0, color="k", lw=1)
    if target:
        ax.axvline(target, color="0.6", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="tokens seen in training (log₂ scale)", ylabel="val loss − baseline's (nats/char)",
           title="the advantage against the tokens seen, at both scales")
    handles = [Line2D([], [], color=style(v)["color"], marker=style(v)["marker"], label=v) for v in variants]
    handles += [Line2D([], [], color="0.3", marker="o", ls="", label="cpu preset: final checkpoint"),
                Line2D([], [], color="0.3", ls="--", label="cpu fit, extrapolated"),
                Line2D([], [], color="0.3", marker="D", ls="", label="gpu scale: best checkpoint"),
                Line2D([], [], color="0.3", marker="D", mfc="white", ls="", label="gpu scale: final checkpoint"),
                Line2D([], [], color="0.6", ls=":", label="the original's tokens")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize="small")
    return ax


def train_and_val(hist, tags, title):
    """Validation (top) and training (bottom) loss of the given tags during training, mean over seeds and
    their range: over-fitting is the validation curve rising while the training curve keeps falling."""
    fig, axes = plt.subplots(2, 1, figsize=(MAX_WIDTH - 0.6, 6.4), sharex=True)
    loss_curves(hist, axes[0], "val_loss", "validation loss", tags=tags)
    loss_curves(hist, axes[1], "train_loss", "training loss", tags=tags, legend=False)
    axes[0].set_xlabel("")
    lo = min(hist.val_loss.min(), hist.train_loss.min())
    for ax, split in zip(axes, ("val_loss", "train_loss")):
        ax.set_ylim(lo - 0.05, hist[hist["iter"] >= hist["iter"].max() * 0.05][split].max() + 0.05)
    fig.suptitle(title)
    return fig


def context_pair(ctx, ax):
    """Each variant minus the baseline at the preset's context (open) and the longer one (filled)."""
    variants = sorted(ctx.variant.unique())
    sizes = sorted(ctx.block_size.unique())
    for i, v in enumerate(variants):
        for j, r in enumerate(ctx[ctx.variant == v].sort_values("block_size").itertuples()):
            st = style(v)
            ax.errorbar(i + 0.18 * (2 * j - 1), r.diff, yerr=[[r.diff - r.lo], [r.hi - r.diff]], fmt=st["marker"],
                        mfc=st["color"] if j else "white", color=st["color"], capsize=3)
    ax.set_xticks(range(len(variants)), variants)
    ax.axhline(0, color="k", lw=1)
    ax.set(ylabel="val loss − baseline's (nats/char)",
           title=f"difference to the baseline at context {sizes[0]} (open) and {sizes[-1]} (filled)")
    return ax


PROBE_COLOURS = {"resid+position": "tab:green", "resid": "tab:blue", "position": "tab:orange",
                 "token+position": "tab:purple", "random init": "tab:brown", "shuffled": "tab:gray"}
SPAN_STYLES = ("-", "--", ":")


def probe_r2(r2, title="linear probes from the baseline's residual stream (mean over heads)"):
    """r2: rows (target, stat, features, layer, r2). One panel per structure statistic and one for the spans;
    colour = what the probe reads (one per reading), line style = which model's spans; one legend."""
    stats = [s for s in ("mean_distance", "std_distance", "mean_logit") if s in set(r2.stat)]
    n = len(stats) + 1
    nrows = -(-n // 2)
    fig, axes = plt.subplots(nrows, 2, figsize=(MAX_WIDTH, 3.0 * nrows + 1.0), sharey=True, squeeze=False)
    flat = list(axes.flat)
    for ax, stat in zip(flat, stats):
        for features, colour in PROBE_COLOURS.items():
            d = r2[(r2.target == "structure") & (r2.stat == stat) & (r2.features == features)]
            ax.plot(d.layer, d.r2, color=colour, marker="o", ms=4)
        ax.set_title(stat.replace("_", " "))
    span_targets = sorted(t for t in set(r2.target) if t.endswith("span"))
    for target, ls in zip(span_targets, SPAN_STYLES):
        for features, colour in PROBE_COLOURS.items():
            d = r2[(r2.target == target) & (r2.features == features)]
            flat[len(stats)].plot(d.layer, d.r2, ls, color=colour, marker="o", ms=4)
    flat[len(stats)].set_title("learned log span")
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:
        ax.set(xlabel="layer (the probe reads the stream entering it)", ylabel="held-out R²")
        ax.axhline(0, color="k", lw=0.8)
        integer_ticks(ax)
    fig.suptitle(title)
    fig.tight_layout()
    handles = [Line2D([], [], color=c, marker="o", label=f) for f, c in PROBE_COLOURS.items()]
    handles += [Line2D([], [], color="0.3", ls=ls, label=t) for t, ls in zip(span_targets, SPAN_STYLES)]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncols=4, fontsize="small",
               frameon=False, title="what the probe reads (colour); whose spans (line style)", title_fontsize="small")
    return fig


SIZE_LABELS = {"frac0.25": "¼ split", "frac0.5": "½ split", "frac1": "full split", "complete": "complete works"}


def data_size(points, ax=None, title="difference to the baseline by training text"):
    """points: rows (variant, size, train_tokens, diff, lo, hi); one tick per data size, named."""
    ax = ax or plt.gca()
    for v in dict.fromkeys(points.variant):
        d = points[points.variant == v].sort_values("train_tokens")
        st = style(v)
        _bars(ax, d.train_tokens, d, marker=st["marker"], color=st["color"], label=v)
    ax.axhline(0, color="k", lw=1)
    ax.set_xscale("log")
    ticks = points.drop_duplicates("size").sort_values("train_tokens")
    ax.set_xticks(ticks.train_tokens, [f"{SIZE_LABELS.get(s, s)}\n{t / 1e6:.2g} M" for s, t in
                                       zip(ticks["size"], ticks.train_tokens)])
    ax.minorticks_off()
    ax.set(xlabel="training text (tokens, log scale)", ylabel="best val loss − baseline's (nats/char)", title=title)
    legend_beside(ax)
    return ax


def passes(sizes, budgets, train_tokens, ax):
    """Both experiments against passes over the training text: circles vary the text at a fixed budget,
    squares the budget on the same text. A variant gets a legend entry only for what it has."""
    for v in dict.fromkeys([*sizes.variant, *budgets.variant]):
        st = style(v)
        d = sizes[sizes.variant == v]
        if len(d):
            _bars(ax, d.passes, d, fmt="o", color=st["color"], label=f"{v}: text size varied")
        b = budgets[budgets.variant == v].sort_values("tokens")
        if len(b):
            _bars(ax, b.tokens / train_tokens, b, fmt="s--", color=st["color"], mfc="white",
                  label=f"{v}: training budget varied")
    ax.axhline(0, color="k", lw=1)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="passes over the training text (tokens seen / training tokens, log₂)",
           ylabel="val loss − baseline's (nats/char)", title="the variants' advantage against passes over the text")
    figure_legend(ax.figure, ax, ncols=2)
    return ax


def gate_spread(caps, ax):
    """Histogram over heads and tokens of each gate relative to its median (log₂), one colour per variant."""
    from .analysis import gate_spread as spread
    for tag, cap in caps.items():
        ax.hist(spread(cap), bins=60, alpha=0.6, label=tag, density=True, color=style(tag)["color"])
    ax.set(xlabel="log₂(gate / median gate)", ylabel="density", title="how far the gates move the heads (seed 0)")
    legend_beside(ax)
    return ax

