"""The book's experimental design: which runs each chapter needs, named once for all notebooks."""

from ..presets import PRESETS
from ..variants import VARIANTS
from .experiments import Run

CHAPTERS = {  # variants each chapter trains against the baseline
    "02_query_windows": ["soft_window", "hard_window", "key_importance", "alibi", "learned_span"],
    "03_structure_gating": ["structure_gate", "output_gate"],
    "04_structure_embeddings": ["structure_mlp", "structure_embedding"],
}
# structure_mlp with the baseline's pre-norm block: isolates the original's post-norm placement
CONTROLS = {"structure_mlp_prenorm": ("structure_mlp", {"structure_mlp_postnorm": False})}


def check_parameters(preset, variants=(), n_seeds=1, device="auto"):
    """Fail a notebook's first cells with a clear message when a papermill parameter is bad."""
    if preset not in PRESETS:
        raise ValueError(f"parameter preset={preset!r} is unknown; valid presets: {', '.join(PRESETS)}")
    bad = [v for v in variants if v not in VARIANTS and v not in CONTROLS]
    if bad:
        raise ValueError(f"parameter variants has unknown names {bad}; valid: {', '.join([*VARIANTS, *CONTROLS])}")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:  # True is an int to Python
        raise ValueError(f"parameter n_seeds must be a positive integer (got {n_seeds!r})")
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"parameter device={device!r} is not one of auto, cpu, cuda")


def runs(preset, names, n_seeds):
    """Runs for variants or named controls, seeds 0..n_seeds−1.

    The chapters look inside seed 0's model only (captures, samples); the other seeds are compared by
    their losses, so their committed results suffice and a fresh clone retrains one model per variant.
    """
    out = []
    for name in names:
        variant, overrides = CONTROLS.get(name, (name, {}))
        tag = name if overrides else None
        out += [Run(preset, variant, s, tag=tag, overrides=overrides, need_model=s == 0) for s in range(n_seeds)]
    return out


def shape_runs(preset, seed=0, both_ways=False):
    """Chapter 05: each knob of the network moved from the preset's value, one knob at a time.

    By default each knob moves once (layers ×1.5, heads ×2, width ×½, dropout to 0.1 or halved,
    context ×½: five runs that fit the cpu preset's time budget); both_ways adds the opposite move
    of each knob (layers ×½, heads ×½, width ×2, more dropout, context ×2).
    """
    m = PRESETS[preset]["model"]
    d = m["dropout"]
    knobs = {  # (first move, opposite move)
        "n_layer": (m["n_layer"] * 3 // 2, max(1, m["n_layer"] // 2)),
        "n_head": (m["n_head"] * 2, max(1, m["n_head"] // 2)),
        "n_embd": (m["n_embd"] // 2, m["n_embd"] * 2),
        "dropout": (0.1 if d == 0 else d / 2, 0.2 if d == 0 else min(0.5, d * 1.5)),
        "block_size": (m["block_size"] // 2, m["block_size"] * 2),
    }
    out = []
    for knob, moves in knobs.items():
        for v in moves[: 2 if both_ways else 1]:
            if knob == "n_embd" and v % m["n_head"]:
                continue
            out.append(Run(preset, "baseline", seed, tag=f"shape-{knob}={v}", overrides={knob: v}, need_model=False))
    return out


DATA_SIZES = {"frac0.25": {"data_fraction": 0.25}, "frac0.5": {"data_fraction": 0.5},
              "complete": {"dataset": "shakespeare_complete"}}


def data_size_runs(preset, variants, n_seeds):
    """Chapter 06, hypothesis 2: the baseline and variants on less and on more text."""
    return [Run(preset, v, s, tag=f"{v}+{size}", overrides=over, need_model=False)
            for size, over in DATA_SIZES.items() for v in variants for s in range(n_seeds)]


# Chapter 06, hypothesis 3 (the regime): the variants that beat the baseline at the cpu preset,
# trained for longer (each budget a complete run with its own schedule) and at a longer context.
REGIME_VARIANTS = ["baseline", "soft_window", "hard_window", "alibi"]
BUDGETS = {2: 3, 4: 3, 8: 2}  # multiple of the preset's iterations: seeds
CONTEXT_SEEDS = 3


def budget_runs(preset, variants, budgets=None):
    """Each variant at every budget (×preset iterations), with that budget's number of seeds."""
    iters = PRESETS[preset]["max_iters"]
    return [Run(preset, v, s, tag=f"{v}+iters{k * iters}", need_model=False,
                overrides={"max_iters": k * iters, "lr_decay_iters": k * iters})
            for k, n in (budgets or BUDGETS).items() for v in variants for s in range(n)]


def context_runs(preset, variants, n_seeds):
    """Each variant at 4× the preset's context (cpu: 256, the original's), the same tokens per
    iteration (a quarter as many sequences), so that only the context length changes."""
    p = PRESETS[preset]
    tokens = p["batch_size"] * p["model"]["block_size"]
    block_size = 4 * p["model"]["block_size"]
    if tokens % block_size:
        raise ValueError(f"block_size {block_size} does not divide the preset's {tokens} tokens per iteration")
    over = {"block_size": block_size, "batch_size": tokens // block_size}
    return [Run(preset, v, s, tag=f"{v}+ctx{block_size}", overrides=over, need_model=False)
            for v in variants for s in range(n_seeds)]


def chapter_runs(chapter, params):
    """The runs a chapter trains before it looks at any result, from its parameter values.

    The single source of every chapter's run list: each notebook calls this with its own name and
    parameters, and `book run --jobs N` trains the union of them for all chapters first, N at a
    time, so that no core idles while one long chapter trains alone. Chapter 06's data-size runs
    depend on which variants came closest to an improvement, so that chapter still trains them itself.
    """
    preset, p = params["preset"], params
    if chapter == "01_baseline":
        return runs(preset, ["baseline"], p["n_seeds"])
    if chapter in CHAPTERS:
        return sum(comparison_runs(preset, p["variants"], p["n_seeds"], p["baseline_seeds"]), [])
    if chapter == "05_network_shape":
        return runs(preset, ["baseline"], p["n_seeds"]) + shape_runs(preset, both_ways=p["both_ways"])
    if chapter == "06_why_it_matches":
        out = sum(comparison_runs(preset, ALL_NAMES, p["n_seeds"], p["baseline_seeds"]), [])
        train = p.get("train_regime")
        if p.get("with_regime", True) and (preset == "smoke" if train is None else train):
            out += regime_runs(preset)  # hours at cpu: a book run trains them only when asked
        return out
    return []


def regime_runs(preset):
    """Every run of the regime experiment: the longer budgets and the longer context."""
    budgets, ctx_seeds = regime_plan(preset)
    return budget_runs(preset, REGIME_VARIANTS, budgets) + context_runs(preset, REGIME_VARIANTS, ctx_seeds)


def regime_plan(preset):
    """(budgets, context seeds) of the regime experiment; at the smoke preset one cheap seed of each."""
    return ({2: 2}, 2) if preset == "smoke" else (BUDGETS, CONTEXT_SEEDS)


ALL_NAMES = [v for v in VARIANTS if v != "baseline"] + list(CONTROLS)  # chapter 06's table


def comparison_runs(preset, names, n_seeds, baseline_seeds):
    """(baseline runs, runs of the named variants): what a chapter compares."""
    return runs(preset, ["baseline"], baseline_seeds), runs(preset, names, n_seeds)


def train_and_compare(planned, jobs=1, retrain=False, root=None, device="auto"):
    """Load-or-train a chapter's planned runs; return (runs table, comparison with the baseline).

    `retrain` applies to the variants only: the baseline's seeds belong to chapter 01. The comparison is the
    chapter's rows of the scale's main table (main_table: Holm over every variant trained at this preset), so
    that a variant gets the same verdict on every page.
    """
    from .experiments import ensure_runs
    from .results import load_runs
    base = [r for r in planned if r.name == "baseline"]
    ours = [r for r in planned if r.name != "baseline"]
    ensure_runs(base, jobs=jobs, root=root, need_model=True, device=device)
    ensure_runs(ours, jobs=jobs, retrain=retrain, root=root, need_model=True, device=device)
    preset = planned[0].preset
    wanted = {(r.name, r.seed) for r in base + ours}
    df = load_runs(preset, root, tags={t for t, _ in wanted})
    df = df[[(t, s) in wanted for t, s in zip(df.tag, df.seed)]].reset_index(drop=True)
    n_seeds = max((r.seed + 1 for r in ours), default=None)
    _, table = main_table(preset, root, n_seeds, len(base))
    return df, table[table.tag.isin(set(df.tag))].reset_index(drop=True)


def main_table(preset, root=None, n_seeds=None, baseline_seeds=None):
    """The scale's main table: every variant and control against the baseline, one family for Holm.

    Chapters 02–04 show their rows of it, so that a variant gets one verdict on every page. Seeds beyond
    n_seeds (baseline_seeds for the baseline) are left out where given; runs not trained yet are absent.
    """
    from .results import compare, load_runs
    runs = load_runs(preset, root, tags={"baseline", *ALL_NAMES})
    if runs.empty:
        return runs, runs
    limit = [baseline_seeds if t == "baseline" else n_seeds for t in runs.tag]
    runs = runs[[lim is None or s < lim for s, lim in zip(runs.seed, limit)]].reset_index(drop=True)
    return runs, compare(runs)

