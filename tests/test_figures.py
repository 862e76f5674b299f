"""The book's figures as a reader sees them: every plotting function in tinygpt.book.plots, drawn on synthetic
data, must keep its legends off the data, put only whole numbers on integer axes (layer, head, position),
give heat maps a colourbar, and fit the book's column."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.book import plots, plots_regime  # noqa: E402

INTEGER_AXES = ("layer", "head", "position")  # an axis whose label starts with or names one of these counts whole units
COLUMN_INCHES = 8.6  # 774 px at 90 dpi: the column (676 px in a 1280 px window) shows it at ≥ 87%, see test_site.py


# ----------------------------------------------------------------------------- the checks

def _data_points(ax):
    """Display coordinates of everything an axis draws as data: line vertices (densified along each segment),
    scatter points, error-bar segments, bar corners; images as their whole extent."""
    pts = []

    def along(xy, n=12):
        xy = np.asarray(xy, float)
        if len(xy) < 2:
            return xy
        t = np.linspace(0, 1, n)[:, None]
        return np.concatenate([a + t * (b - a) for a, b in zip(xy[:-1], xy[1:])])

    for line in ax.get_lines():
        if line.get_transform() is not ax.transData or not line.get_visible():
            continue  # axhline/axvline reference lines
        xy = np.column_stack([line.get_xdata(orig=False), line.get_ydata(orig=False)]).astype(float)
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy):
            pts.append(along(ax.transData.transform(xy)))
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and len(coll.get_offsets()):
            pts.append(coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float)))
        elif isinstance(coll, LineCollection):
            for seg in coll.get_segments():
                if len(seg):
                    pts.append(along(coll.get_transform().transform(np.asarray(seg, float))))
    for patch in ax.patches:
        if isinstance(patch, Rectangle) and patch.get_transform().contains_branch(ax.transData):
            bb = patch.get_window_extent()
            if bb.width > 0 and bb.height > 0 and bb.height < ax.bbox.height * 0.99:  # bars, not spans
                pts.append(np.array([[bb.x0, bb.y1], [bb.x1, bb.y1], [(bb.x0 + bb.x1) / 2, bb.y1]]))
    for im in ax.get_images():
        if isinstance(im, AxesImage):
            bb = im.get_window_extent()
            xs, ys = np.meshgrid(np.linspace(bb.x0, bb.x1, 20), np.linspace(bb.y0, bb.y1, 20))
            pts.append(np.column_stack([xs.ravel(), ys.ravel()]))
    return np.concatenate(pts) if pts else np.empty((0, 2))


def legend_overlaps(fig):
    """'axis title: n points under legend' for every legend (axis or figure) that covers data of any axis."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    problems = []
    for lg in legends:
        box = lg.get_window_extent(renderer).padded(-1)
        for ax in fig.axes:
            pts = _data_points(ax)
            inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1))
            # a point outside its axis is clipped away, invisible: it cannot be covered
            visible = ax.bbox.padded(0.5)
            inside &= (pts[:, 0] >= visible.x0) & (pts[:, 0] <= visible.x1) & (pts[:, 1] >= visible.y0) & (
                pts[:, 1] <= visible.y1)
            if inside.any():
                problems.append(f"{ax.get_title() or ax.get_xlabel()!r}: {int(inside.sum())} point(s) under a legend")
    return problems


def fractional_ticks(fig):
    """Visible tick values that are not whole numbers on axes labelled layer/head/position."""
    fig.canvas.draw()
    problems = []
    for ax in fig.axes:
        for name, axis, lim in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
            label = axis.get_label_text().lower()
            if not any(word in label for word in INTEGER_AXES) or axis.get_scale() != "linear":
                continue
            lo, hi = min(lim), max(lim)
            ticks = [t for t in axis.get_majorticklocs() if lo - 1e-9 <= t <= hi + 1e-9]
            texts = [t.get_text() for t in axis.get_majorticklabels()]
            numeric = all(_is_number(s) for s in texts if s)
            bad = [t for t in ticks if abs(t - round(t)) > 1e-9] if numeric else []
            if bad:
                problems.append(f"{ax.get_title()!r} {name} axis ({label}): ticks {bad}")
    return problems


def _is_number(s):
    try:
        float(s.replace("−", "-"))
        return True
    except ValueError:
        return False


def heat_maps_without_colourbar(fig):
    """Axes with an image drawn on a continuous colour scale and no colourbar anywhere in the figure."""
    has_cbar = any(getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>" for ax in fig.axes)
    images = [ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]
    return [] if has_cbar or not images else [f"{ax.get_title()!r}: no colourbar" for ax in images]


def titles_overhang(fig):
    """Axis titles wider than their axis by more than 10%: they run over the neighbouring labels."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [f"{ax.get_title()!r} is wider than its axis" for ax in fig.axes
            if ax.get_title() and ax.title.get_window_extent(r).width > 1.1 * ax.bbox.width]


def too_wide(fig):
    fig.canvas.draw()
    width = fig.get_tightbbox(fig.canvas.get_renderer()).width  # inches, legends outside the axes included
    return [f"{width:.1f} in wide (> {COLUMN_INCHES})"] if width > COLUMN_INCHES else []


# ----------------------------------------------------------------------------- synthetic inputs

def _histories(tags=("baseline", "soft_window", "hard_window", "alibi"), seeds=3, iters=range(0, 2001, 250)):
    rng = np.random.default_rng(0)
    rows = []
    for k, tag in enumerate(tags):
        for s in range(seeds):
            for it in iters:
                v = 1.9 + 2.3 * np.exp(-it / 300) - 0.02 * k + rng.normal(0, 0.01)
                rows.append({"tag": tag, "seed": s, "iter": it, "val_loss": v, "train_loss": v - 0.03 * it / 2000})
    return pd.DataFrame(rows)


def _table(tags=("soft_window", "hard_window", "key_importance", "alibi", "learned_span")):
    from tinygpt.book.results import compare
    return compare(_runs(tags))


def _runs(tags):
    rng = np.random.default_rng(1)
    rows = [{"tag": "baseline", "seed": s, "val_loss_full": 1.92 + rng.normal(0, 0.02), "path": ""} for s in range(5)]
    # the last variant is "worse" and sits at the far right: where a lower-right legend used to fall
    for k, tag in enumerate(tags):
        shift = -0.1 + 0.04 * k if k < len(tags) - 1 else 0.06
        rows += [{"tag": tag, "seed": s, "val_loss_full": 1.92 + shift + rng.normal(0, 0.01), "path": ""}
                 for s in range(3)]
    return pd.DataFrame(rows)


def _capture(variant="hard_window", T=16):
    torch.manual_seed(0)
    cfg = tinygpt.make_config("smoke", variant=variant).model
    model = tinygpt.GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, min(T, cfg.block_size)))
    return tinygpt.capture(model, idx), cfg


def _per_head_values(L=4, H=4, n=200, low=True):
    """Values that crowd the bottom of the axis in every layer: a bottom-right legend would cover them."""
    rng = np.random.default_rng(2)
    return {layer: rng.gamma(1.5, 2.0, size=(H, n)) * (1 + layer) for layer in range(L)}


def _fig_loss_curves():
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plots.loss_curves(_histories(), ax, "val_loss")
    return fig


def _fig_differences():
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plots.differences(_table(), ax)
    return fig


def _fig_attention_grid():
    cap, cfg = _capture()
    return plots.attention_grid(cap, [0, cfg.n_layer - 1], list(range(cfg.n_head)), span=True, suptitle="grid")


def _fig_per_head():
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plots.per_head(_per_head_values(), ax, "mean distance per head", "tokens")
    return fig


def _fig_probe_r2():
    rows = []
    for stat in ("mean_distance", "std_distance", "mean_logit"):
        for feat in plots_regime.PROBE_COLOURS:
            for layer in range(5):
                rows.append({"target": "structure", "stat": stat, "features": feat, "layer": layer,
                             "r2": 0.9 - 0.1 * layer if feat != "shuffled" else 0.0})
    for target in ("soft_window span", "hard_window span"):
        for feat in plots_regime.PROBE_COLOURS:
            for layer in range(4):
                rows.append({"target": target, "stat": "", "features": feat, "layer": layer, "r2": 0.1 * layer})
    return plots_regime.probe_r2(pd.DataFrame(rows))


def _size_points():
    return pd.DataFrame([{"variant": v, "size": size, "train_tokens": t, "passes": 1.5e6 / t, "diff": d,
                          "lo": d - 0.03, "hi": d + 0.03}
                         for v, d0 in (("soft_window", -0.1), ("hard_window", -0.08)) for size, t, d in
                         (("frac0.25", 2.5e5, d0 * 1.5), ("frac0.5", 5e5, d0 * 1.2), ("frac1", 1e6, d0),
                          ("complete", 4.5e6, d0 * 0.3))])


def _budget_points(variants=("soft_window", "hard_window", "alibi")):
    return pd.DataFrame([{"variant": v, "budget": b, "iters": 2000 * b, "tokens": 1.536e6 * b, "diff": d,
                          "lo": d - 0.02, "hi": d + 0.02, "base_mean": 1.9}
                         for i, v in enumerate(variants) for b in (1, 2, 4, 8)
                         for d in [-0.12 / (i + 1) + 0.03 * np.log2(b) / (i + 1)]])


def _fig_data_size():
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    plots_regime.data_size(_size_points(), ax)
    return fig


def _fig_passes():
    """Issue 30: a variant with budget runs only gets no 'text size varied' entry."""
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    plots_regime.passes(_size_points(), _budget_points(), 1e6, ax)
    labels = fig.legends[0].get_texts()
    assert "alibi: text size varied" not in [t.get_text() for t in labels]
    return fig


def _fig_gap_by_tokens():
    pts = _budget_points()
    seeds = pts.loc[pts.index.repeat(2), ["variant", "tokens", "diff"]].assign(diff=lambda d: d["diff"] + 0.01)
    gpu = pd.DataFrame([{"variant": v, "tokens": 8.2e7, "diff": d, "lo": d - 0.04, "hi": d + 0.04, "checkpoint": k}
                        for v in ("soft_window", "alibi") for k, d in (("best", -0.005), ("final", 0.07))])
    gpu_seeds = gpu.assign(diff=gpu["diff"] + 0.005)
    fits = {v: {"intercept": -0.12 / (i + 1) - 0.03 * np.log2(1.536e6) / (i + 1), "slope": 0.03 / (i + 1)}
            for i, v in enumerate(("soft_window", "hard_window", "alibi"))}
    fig, ax = plt.subplots(figsize=(plots.MAX_WIDTH - 0.2, 4.4))
    plots_regime.gap_by_tokens(pts, seeds, ax, 8.2e7, gpu, gpu_seeds, fits)
    return fig


def _fig_train_and_val():
    return plots_regime.train_and_val(_histories(("baseline", "soft_window", "alibi")), ["baseline", "soft_window",
                                                                                         "alibi"], "over-fitting")


def _fig_context_pair():
    ctx = pd.DataFrame([{"variant": v, "block_size": L, "diff": d, "lo": d - 0.02, "hi": d + 0.02}
                        for v in ("alibi", "hard_window", "soft_window") for L, d in ((64, -0.08), (256, -0.35))])
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    plots_regime.context_pair(ctx, ax)
    return fig


def _fig_comparison(tmp_path_factory=None):
    import json
    import tempfile
    from pathlib import Path
    tmp = Path(tempfile.mkdtemp())
    hist = _histories(("baseline", "structure_gate", "output_gate"), seeds=5)
    paths = []
    for (tag, seed), g in hist.groupby(["tag", "seed"]):
        d = tmp / tag / f"seed{seed}"
        d.mkdir(parents=True)
        evals = g[["iter", "train_loss", "val_loss"]].to_dict("records")
        (d / "history.json").write_text(json.dumps({"config": {"seed": int(seed)}, "evals": evals}))
        paths.append(str(d))
    runs = _runs(("output_gate", "structure_gate"))
    runs["path"] = [str(tmp / r.tag / f"seed{r.seed}") for r in runs.itertuples()]
    from tinygpt.book.results import compare
    return plots.comparison(runs, compare(runs), ["baseline", "structure_gate", "output_gate"])


def _fig_gap_over_training():
    from tinygpt.book.regime import gap_over_training
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plots.gap_over_training(gap_over_training(_histories()), ax)
    return fig


def _fig_key_importance():
    rng = np.random.default_rng(3)
    chars = list(" !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n")
    return plots.key_importance([0.3, 0.5, 0.8, 1.1], pd.Series(rng.normal(0, 1, len(chars)), index=chars))


def _fig_structure_features():
    rng = np.random.default_rng(4)
    feats = {layer: rng.normal(0, 1, (64, 8)).cumsum(0) / 8 for layer in (0, 3)}
    return plots.structure_features(feats, 4, [0, 3])


def _fig_gate_correlation():
    rng = np.random.default_rng(5)
    corr = pd.DataFrame([{"variant": v, "layer": a, "head": h, "stat": s, "r": rng.uniform(-1, 1)}
                         for v in ("structure_gate", "output_gate") for a in range(4) for h in range(4)
                         for s in ("mean_distance", "std_distance", "mean_logit")])
    return plots.gate_correlation(corr, ["structure_gate", "output_gate"])


def _fig_signal_sizes():
    sig = pd.DataFrame({"layer": range(4), "attention output": [1.0, 1.2, 1.4, 1.6], "gate change": [0.1] * 4,
                        "f_bias": [0.2] * 4, "f_loc": [0.15] * 4})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plots.signal_sizes(sig, ax)
    return fig


def _fig_knob_grid():
    knobs = {"n_layer": "layers", "n_head": "heads", "n_embd": "dimensions", "dropout": "probability",
             "block_size": "tokens"}
    base = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "block_size": 64}
    runs = pd.DataFrame([{"knob": "n_layer", "value": 6, "val_loss_full": 2.03},
                         {"knob": "n_head", "value": 8, "val_loss_full": 1.93},
                         {"knob": "n_embd", "value": 64, "val_loss_full": 2.08},
                         {"knob": "dropout", "value": 0.1, "val_loss_full": 1.99},
                         {"knob": "block_size", "value": 32, "val_loss_full": 1.95}])
    return plots.knob_grid(knobs, base, np.array([1.90, 1.92, 1.94, 1.91, 1.93]), runs)


FIGURES = {name[5:]: fn for name, fn in globals().items() if name.startswith("_fig_")}


@pytest.fixture(autouse=True)
def _book_theme():
    plots.setup()
    yield
    plt.close("all")


@pytest.mark.parametrize("name", FIGURES)
def test_no_legend_covers_data(name):
    fig = FIGURES[name]()
    assert legend_overlaps(fig) == []


@pytest.mark.parametrize("name", FIGURES)
def test_integer_axes_have_whole_ticks(name):
    assert fractional_ticks(FIGURES[name]()) == []


@pytest.mark.parametrize("name", FIGURES)
def test_figure_fits_the_column(name):
    assert too_wide(FIGURES[name]()) == []


@pytest.mark.parametrize("name", FIGURES)
def test_titles_fit_their_axes(name):
    assert titles_overhang(FIGURES[name]()) == []


@pytest.mark.parametrize("name", ["attention_grid", "gate_correlation"])
def test_heat_maps_have_a_colourbar(name):
    assert heat_maps_without_colourbar(FIGURES[name]()) == []


def test_the_checks_catch_the_defects():
    """Each check fails on a figure made to have its defect: a legend over a line, half-integer layer ticks."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2, 3], [1, 1, 1, 1], label="a line right across the axis")
    ax.set_ylim(0.9, 1.1)
    ax.legend(loc="center")
    assert legend_overlaps(fig)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2, 3], [1, 2, 3, 4])
    ax.set(xlabel="layer")
    ax.set_xticks([0, 0.5, 1, 1.5, 2, 2.5, 3])
    assert fractional_ticks(fig)
    fig, ax = plt.subplots(figsize=(12, 3))
    assert too_wide(fig)
    fig, ax = plt.subplots()
    ax.imshow(np.eye(3))
    assert heat_maps_without_colourbar(fig)


def test_every_variant_has_its_own_style():
    names = [*tinygpt.VARIANTS, "structure_mlp_prenorm"]
    assert set(names) <= set(plots.STYLE)
    pairs = [(str(plots.STYLE[n]["color"]), plots.STYLE[n]["marker"]) for n in names]
    assert len(set(pairs)) == len(pairs), "two variants share a colour and marker"
    assert len({str(plots.STYLE[n]["color"]) for n in names}) == len(names), "two variants share a colour"
    assert plots.style("soft_window+iters4000") == plots.STYLE["soft_window"]
    assert plots.style("hard_window+frac0.25") == plots.STYLE["hard_window"]
    assert plots.style("soft_window+ctx256") == plots.STYLE["soft_window"]
