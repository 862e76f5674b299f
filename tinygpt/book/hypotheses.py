"""Chapter 6's three hypotheses, each a rule that turns measured numbers into a verdict.

    h3_fits(points, at_tokens)        # the regime: does the gap close as training grows? (per variant)
    h1_verdict(means, regime_verdicts)  # the information is already in the stream: probes, read with the losses
    data_size_table(sizes, ...); h2_verdict(table)  # the data are too small

The rules are stated in the docstrings, applied here and nowhere else; chapter 6 states them in prose from
the same constants, chapter 7 and the README read their results from results/<preset>/summary.json.
"""

import pandas as pd

from .regime import fit_gap, fit_power
from .results import ALPHA, contrast, holm, judge, welch, welch_p

# ----------------------------------------------------------------------------- hypothesis 3: the regime


def h3_fits(points, at_tokens):
    """Per variant with ≥ 2 budgets: the gap fitted against log2(tokens) (regime.fit_gap), the power-law
    alternative, and the variant's verdict; returns (fits, overall verdict).

    Rule: *supported* for a variant better than the baseline at the preset's budget (1×, the rule of
    results.verdict) whose slope per doubling is significantly positive, Holm-adjusted over the variants:
    the gap closes as training grows; *refuted* where the slope's interval lies at or below 0; else
    *inconclusive*. Overall: supported if some variant supports it and none refutes it; refuted if all do.
    """
    from scipy import stats

    fits = {}
    for v, g in points.groupby("variant"):
        if g.budget.nunique() < 2:
            continue
        f = fit_gap(g, at_tokens)
        se = (f["slope_hi"] - f["slope"]) / stats.t.ppf(0.975, max(f["dof"], 1))
        f.update(power=fit_power(g, at_tokens), budgets=sorted(g.budget.tolist()),
                 better_1x=bool(((g.budget == 1) & (g.verdict == "better")).any()),
                 p=float(2 * stats.t.sf(abs(f["slope"]) / se, max(f["dof"], 1))))
        fits[v] = f
    for f, q in zip(fits.values(), holm([f["p"] for f in fits.values()])):
        f["p (Holm)"] = float(q)
        f["h3"] = ("supported" if f["better_1x"] and f["slope_lo"] > 0 and q < ALPHA else
                   "refuted" if f["slope_hi"] <= 0 else "inconclusive")
    verdicts = [f["h3"] for f in fits.values()]
    overall = ("supported" if "supported" in verdicts and "refuted" not in verdicts else
               "refuted" if verdicts and all(v == "refuted" for v in verdicts) else "inconclusive")
    return fits, overall


# ----------------------------------------------------------------------------- hypothesis 1: the stream

PROBE_MAIN = "resid+position"  # the stream entering the layer, with a one-hot of the query position
PROBE_CONTROLS = ("token+position", "random init")  # readings the stream must beat to mean anything
R2_SUPPORT, R2_REFUTE = 0.5, 0.25
# which variants inject which information: where one of them is better, the stream did not already supply it
INJECTS = {"structure": ["structure_gate", "structure_mlp", "structure_mlp_prenorm", "structure_embedding"],
           "spans": ["soft_window", "hard_window"]}


def probe_verdict(r2):
    """The probes alone, for one target (a Series of mean held-out R² by features).

    Rule: *supported* if the stream with position explains at least half the variance (R² ≥ 0.5) and beats
    both controls; *refuted* if its R² is below 0.25; otherwise *inconclusive*.
    """
    main = r2[PROBE_MAIN]
    if main >= R2_SUPPORT and all(main > r2[c] for c in PROBE_CONTROLS):
        return "supported"
    return "refuted" if main < R2_REFUTE else "inconclusive"


def h1_verdict(means, regime_verdicts):
    """Hypothesis 1, per kind of information (structure, spans), from the probes and the losses.

    means: {"structure": Series, "spans": Series} of mean R² by features; regime_verdicts: {regime: {tag:
    verdict}} (the scale's main table, each training budget, …). Rule: in a regime where a variant that
    injects the information is *better*, the hypothesis is **contradicted** there (the stream evidently did
    not supply it); elsewhere it stands on the probes. Overall: contradicted if it is contradicted in any
    regime, else the probes' verdict.
    """
    per_info, by_regime = {}, {}
    for info, tags in INJECTS.items():
        probes = probe_verdict(means[info])
        lost = [name for name, verdicts in regime_verdicts.items()
                if any(verdicts.get(t) == "better" for t in tags)]
        for name, verdicts in regime_verdicts.items():
            if any(t in verdicts for t in tags):
                by_regime.setdefault(name, {})[info] = "contradicted" if name in lost else probes
        r2 = means[info]
        per_info[info] = {"probes": probes, "contradicted_in": lost, "r2": float(r2[PROBE_MAIN]),
                          "margin": float(r2[PROBE_MAIN] - max(r2[c] for c in PROBE_CONTROLS)),
                          **{c: float(r2[c]) for c in r2.index}}
        per_info[info]["verdict"] = "contradicted" if lost else probes
    verdicts = [d["verdict"] for d in per_info.values()]
    overall = "contradicted" if "contradicted" in verdicts else (
        verdicts[0] if len(set(verdicts)) == 1 else "inconclusive")
    return {"verdict": overall, "per_info": per_info, "by_regime": by_regime}


# ----------------------------------------------------------------------------- hypothesis 2: the data

H2_TOL = 0.005  # nats per doubling of text: a benefit smaller than this is none worth the name


def data_size_runs(size_runs, runs, candidates, data, complete):
    """The data-size runs with the full split's (the main runs, as "+frac1"), each tagged with `model` and `size`;
    and the training tokens of each size. data, complete: tiny Shakespeare's and the complete works' datasets."""
    full = runs[runs.tag.isin(["baseline", *candidates])].assign(tag=lambda d: d.tag + "+frac1")
    sizes = pd.concat([size_runs, full], ignore_index=True)
    sizes["model"], sizes["size"] = zip(*[t.split("+") for t in sizes.tag])
    train_tokens = {"frac0.25": 0.25 * data.train_tokens, "frac0.5": 0.5 * data.train_tokens,
                    "frac1": data.train_tokens, "complete": complete.train_tokens}
    return sizes, train_tokens


def size_display(table):
    """data_size_table for display, narrow enough for the column."""
    from .prose import interval
    return table.assign(**{"training tokens (M)": table.train_tokens / 1e6, "difference [95%]": interval(table)})[
        ["variant", "size", "training tokens (M)", "passes", "n", "difference [95%]", "verdict"]].round(3)


def data_size_table(sizes, candidates, train_tokens, tokens_seen, metric="val_loss_full"):
    """Per candidate and data size: its difference to the baseline trained on the same text (Welch).

    sizes: load_runs rows with `model` (variant or baseline) and `size` (a key of train_tokens).
    """
    rows = []
    for v in candidates:
        for size, n_tok in train_tokens.items():
            a = sizes[(sizes.model == v) & (sizes["size"] == size)][metric]
            b = sizes[(sizes.model == "baseline") & (sizes["size"] == size)][metric]
            if len(a) < 2 or len(b) < 2:
                continue
            rows.append({"variant": v, "size": size, "train_tokens": n_tok, "n": len(a), "n_base": len(b),
                         **welch(a, b), "p": welch_p(a, b), "tokens_seen": tokens_seen,
                         "passes": tokens_seen / n_tok})
    return judge(pd.DataFrame(rows)) if rows else pd.DataFrame()


def more_text(sizes, candidates, full="frac1", more="complete", metric="val_loss_full"):
    """Per candidate: its gap on the larger text minus its gap on the full split (difference of differences).

    This is the only step that adds text beyond tiny Shakespeare's training split; the smaller splits only
    take text away. Rows (variant, gap_full, gap_more, change, lo, hi, doublings).
    """
    rows = []
    for v in candidates:
        g = [sizes[(sizes.model == m) & (sizes["size"] == s)][metric].to_numpy()
             for m, s in ((v, more), ("baseline", more), (v, full), ("baseline", full))]
        if min(map(len, g)) < 2:
            continue
        c = contrast(g, (1, -1, -1, 1))
        rows.append({"variant": v, "gap_full": g[2].mean() - g[3].mean(), "gap_more": g[0].mean() - g[1].mean(),
                     "change": c["diff"], "lo": c["lo"], "hi": c["hi"]})
    return pd.DataFrame(rows)


def h2_slopes(table):
    """Per variant: the difference fitted against log2(training tokens) over the data sizes (regime.fit_gap)."""
    out = {}
    for v, g in table.groupby("variant", sort=False):
        if len(g) >= 3:
            f = fit_gap(g.rename(columns={"train_tokens": "tokens"}), float(g.train_tokens.max()))
            out[v] = {"slope": f["slope"], "lo": f["slope_lo"], "hi": f["slope_hi"]}
    return out


def h2_verdict(change, doublings):
    """Hypothesis 2 from `more_text`: does more text than tiny Shakespeare favour the variant?

    Rule: *supported* if some variant's gap is significantly lower (more negative) on the larger text than
    on the full split; *refuted* if for every variant the change's interval excludes a benefit larger than
    H2_TOL nats per doubling of text (lo > −H2_TOL·doublings); otherwise *inconclusive*. The smaller splits
    are shown but do not decide: taking text away is not the question the original asked.
    """
    if not len(change):
        return "inconclusive"
    if (change.hi < 0).any():
        return "supported"
    return "refuted" if (change.lo > -H2_TOL * doublings).all() else "inconclusive"


def verdicts_by_budget(table, budget_pts):
    """{regime: {tag: verdict}}: the main table as "1×" and each longer budget of the regime experiment."""
    out = {"1×": {r.tag: r.verdict for r in table.dropna(subset=["diff"]).itertuples()}}
    for r in budget_pts.itertuples() if len(budget_pts) else []:
        if r.budget != 1:
            out.setdefault(f"{r.budget:g}×", {})[r.variant] = r.verdict
    return out
