"""The sentences of chapter 6 (the answer) and its summary, built from the numbers they describe.

As in prose.py, every word that judges ("closed", "over-fits", "contradicted", "inside the prediction") is
chosen here from the numbers, and tests/test_prose.py renders them from the stored results to check the
words against the numbers.
"""

import pandas as pd

from .prose import _names


def _diff(r, lo="ci_lo", hi="ci_hi"):
    return f"{r['diff']:+.3f} [{r[lo]:+.3f}, {r[hi]:+.3f}]"


def prediction_paragraph(prediction, best, final):
    """How the cpu preset's extrapolation compared with the gpu measurement, variant by variant."""
    if prediction.empty:
        return "No variant was measured at the gpu scale that the regime experiment also fitted."
    b, f = best.set_index("tag"), final.set_index("tag")
    inside = prediction[prediction.inside].variant.tolist()
    outside = prediction[~prediction.inside].variant.tolist()
    lines = [
        "**The prediction against the measurement.** The cpu fit predicted the final checkpoint's gap at the "
        "original's tokens: " + "; ".join(
            f"{r.variant} {r['predicted (line)']:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]" for _, r in prediction.iterrows())
        + ". "
        "The gpu runs measured " + "; ".join(f"{v} {_diff(f.loc[v])}" for v in prediction.variant) + " at the "
        "final checkpoint" + (f" (inside the predicted interval for {_names(inside)}" if inside else " (")
        + (f"{'; ' if inside else ''}outside it for {_names(outside)})" if outside else ")") + ", and "
        + "; ".join(f"{v} {_diff(b.loc[v])}" for v in prediction.variant) + " at the best checkpoint."]
    lines.append(
        "Read with care: the fit was made on a different model (4 layers, width 128, context 64, no dropout), and "
        "at the gpu scale the final checkpoint is over-fitted (section 2.6), so what a final-checkpoint gap "
        "measures there is how much sooner and further the variants over-fit, not the architecture's best. "
        + ("The sign the line predicted for the final checkpoint is the one the gpu runs show"
           if all((r["predicted (line)"] > 0) == (r["measured: final"] > 0) for _, r in prediction.iterrows()) else
           "The sign the line predicted for the final checkpoint is not the one the gpu runs show for every variant")
        + "; at the best checkpoint, the comparison the original made, the gap is "
        + ", ".join(f"{v} {b.loc[v, 'diff']:+.3f}" for v in prediction.variant)
        + f" ({_verdicts(b, prediction.variant)}).")
    return " ".join(lines)


def _verdicts(t, tags):
    by = {}
    for tag in tags:
        by.setdefault(t.loc[tag, "verdict"], []).append(tag)
    return "; ".join(f"{_names(v)}: {k}" for k, v in by.items())


def head_start_paragraph(closed, table, train_gap, tokens_per_iter=16_384):
    """Where the gpu variants' head start closes, and what the best iterations and the loss rise say after it."""
    from .scales import CLOSE_NATS

    t = table.set_index("tag")
    base_iters, base_rise = t.loc["baseline", "best_iters"], t.loc["baseline", "final_rise"]
    tags = closed.tag.tolist()
    sooner = [v for v in tags if _mean_iter(t.loc[v, "best_iters"]) < _mean_iter(base_iters)]
    further = [v for v in tags if t.loc[v, "final_rise"] > base_rise]
    last = train_gap[train_gap["iter"] == train_gap["iter"].max()]
    lower_train = last[last["diff"] < 0].tag.tolist()
    text = []
    done = closed.dropna(subset=["closed_at"])
    if len(done):
        start = _names([f"{r.tag} {r.gap_first:+.2f}" for r in closed.itertuples()])
        when = _names(sorted({f"{int(x):,}" for x in done.closed_at}))
        text.append(f"At the gpu scale the variants start far ahead ({start} nats at the first evaluation) and the "
                    f"head start is gone by iteration {when} (the first evaluation from which the mean gap stays "
                    f"above −{CLOSE_NATS:g} nats): the baseline learns the recency preference by itself within about "
                    f"{done.closed_at.max() * tokens_per_iter / 1e6:.0f} M tokens.")
    if sooner or further:
        how = " and ".join(w for w, vs in (("sooner", sooner), ("further", further)) if vs)
        iters = ", ".join(f"{v} {t.loc[v, 'best_iters']}" for v in tags)
        rises = ", ".join(f"{v} {t.loc[v, 'final_rise']:+.3f}" for v in tags)
        text.append(f"After that the variants over-fit {how} than the baseline: best iterations {iters} against "
                    f"the baseline's {base_iters}, and a rise from the best checkpoint to the final one of {rises} "
                    f"against the baseline's {base_rise:+.3f} nats.")
    if lower_train:
        text.append(f"Their training loss stays below the baseline's to the end ({_names(lower_train)}): they fit the "
                    "training text better and generalise no better.")
    return " ".join(text)


def _mean_iter(s):
    vals = [int(x.replace(",", "")) for x in str(s).split(" / ")]
    return sum(vals) / len(vals)


def baseline_curve_line(curve):
    return (f"At {curve['budget']:g}× the cpu baseline's mean validation estimate is lowest at iteration "
            f"{curve['best_iter']:,} and ends {curve['rise']:.3f} nats above that minimum; at the end its validation "
            f"loss is {abs(curve['generalisation_gap']):.3f} nats "
            f"{'above' if curve['generalisation_gap'] >= 0 else 'below'} the training loss. "
            + ("It **over-fits** by the end of that budget, mildly next to the gpu runs." if curve["overfits"] else
               "It does **not over-fit** within this budget (the end is within 0.01 nats of the best)."))


def h1_paragraph(h1):
    """Hypothesis 1's verdict with the numbers that decide it: the stream against its strongest controls."""
    parts = []
    for info, d in h1["per_info"].items():
        controls = f"token+position {d['token+position']:.2f}, an untrained model's stream {d['random init']:.2f}"
        where = (f"contradicted at {_names(d['contradicted_in'])}, where a variant that injects it is better"
                 if d["contradicted_in"] else f"{d['probes']} by the probes, and contradicted nowhere")
        parts.append(f"For the {'attention structure' if info == 'structure' else 'learned spans'}: R² "
                     f"{d['r2']:.2f} from the stream, against {controls} (a margin of {d['margin']:+.2f}); "
                     f"{where}.")
    thin = [k for k, d in h1["per_info"].items() if d["margin"] < 0.15]
    lost = [k for k, d in h1["per_info"].items() if d["contradicted_in"]]
    return (f"**Hypothesis 1: {h1['verdict']}.** " + " ".join(parts)
            + (f" For the {_names(thin)} the stream adds little (under 0.15 of R²) to what the token and its position "
               "already tell, or to what any stream of this shape yields." if thin else "")
            + (f" Where the {_names(lost)} help, the network evidently did not use what its stream could have "
               "told it." if lost else ""))


def h2_paragraph(h2, more, slopes, doublings):
    """Hypothesis 2's verdict from the step to more text, with the slopes over all sizes beside it."""
    said = "; ".join(f"{r.variant} {r.gap_full:+.3f} on the full split, {r.gap_more:+.3f} on the complete works "
                     f"(change {r.change:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}])" for r in more.itertuples())
    slope = "; ".join(f"{v} {s['slope']:+.4f} [{s['lo']:+.4f}, {s['hi']:+.4f}]" for v, s in slopes.items())
    return (f"**Hypothesis 2: {h2}.** From tiny Shakespeare's full split to the complete works "
            f"({2 ** doublings:.1f}× the text, {doublings:.1f} doublings): {said}. Over all four sizes the slope per "
            f"doubling is {slope} nats, but it rests on the smaller splits, where the variants' runs pass over "
            "the same text many times; taking text away is not what the original meant. The complete works are "
            "validated on held-out works, the splits on tiny Shakespeare's own validation text, so the two ends "
            "of the axis also differ in what they are measured on.")


def worse_paragraph(gap, final_train, worse):
    from .prose import gap_paragraph
    trains = ", ".join(f"{w} ends at {final_train[w]:.3f}" for w in worse)
    cost = all(final_train[w] > final_train["baseline"] for w in worse)
    return (gap_paragraph(gap) + f" On the training loss too: {trains} against the baseline's "
            f"{final_train['baseline']:.3f}" + (", so the deficit is a cost in optimisation, not over-fitting."
                                                 if cost else "."))


def chapter6_summary(s):
    """The chapter's closing bullets, from its summary dict (results/<preset>/summary.json)."""
    table = pd.DataFrame(s["table"])
    counts = table.verdict.value_counts()
    gpu = pd.DataFrame(s.get("gpu", {}).get("table", []))
    lines = [f"- At the **{s['preset']}** preset, of {len(table) - 1} variants and controls: "
             + ", ".join(f"{n} {k}" for k, n in counts.items()) + " (Welch 95% intervals, Holm over the table; "
             f"'matches' needs an interval narrower than {s['match_width']} nats)."]
    if len(gpu):
        g = gpu.dropna(subset=["diff"])
        lines.append("- At the **gpu** scale (the original's; 2 seeds each): " + "; ".join(
            f"{r.tag} {r.diff:+.4f} [{r.ci_lo:+.4f}, {r.ci_hi:+.4f}] ({r.verdict})" for r in g.itertuples())
            + " at the best checkpoint.")
    h3 = s["h3"]
    lines.append(f"- **Hypothesis 3 (the regime): {h3['verdict']}** at the {s['preset']} preset; slopes per doubling "
                 "of the "
                 "training budget: " + "; ".join(f"{v} {f['slope']:+.4f} [{f['slope_lo']:+.4f}, {f['slope_hi']:+.4f}]"
                                                 f" ({f['h3']})" for v, f in h3["fits"].items()) + ".")
    hs = pd.DataFrame(s.get("gpu", {}).get("head_start", []))
    if len(hs):
        closed = ", ".join(f"{r.closed_at:,} ({r.tag})" for r in hs.dropna(subset=["closed_at"]).itertuples())
        end = ", ".join(f"{r.tag} {r.gap_end:+.3f}" for r in hs.itertuples())
        lines.append(f"- At the gpu scale the head start closes by iteration {closed}; by the end the variants are "
                     f"{end} from the baseline in the periodic estimate.")
    h1, h2 = s["h1"], s["h2"]
    per = [f"{k}: R² {d['r2']:.2f} against controls up to {d['r2'] - d['margin']:.2f}"
           + (f", contradicted at {', '.join(d['contradicted_in'])}" if d["contradicted_in"] else "")
           for k, d in h1["per_info"].items()]
    lines.append(f"- **Hypothesis 1 (information already there): {h1['verdict']}** ({'; '.join(per)}).")
    lines.append(f"- **Hypothesis 2 (data too small): {h2['verdict']}**: from the full split to the complete works "
                 + "; ".join(f"{r['variant']} {r['gap_full']:+.3f} → {r['gap_more']:+.3f}" for r in h2["more_text"])
                 + ".")
    return "\n".join(lines)


def context_paragraph(change):
    """What the longer context did: the baseline's own loss, each variant's, and the change of each gap."""
    b = change.iloc[0]
    worse = b.base_long > b.base_short
    moved = ", ".join(f"{r.variant} {r.var_short:.3f} → {r.var_long:.3f}" for r in change.itertuples())
    wider = change[change.hi < 0].variant.tolist()
    base_move = b.base_long - b.base_short
    var_moves = (change.var_long - change.var_short).abs()
    mostly_base = worse and (var_moves < abs(base_move) / 2).all()
    return (f"With the same budget and the same tokens per iteration, the baseline's loss goes from {b.base_short:.3f} "
            f"at context {b.short} to {b.base_long:.3f} at {b.long} ({'worse' if worse else 'better'} by "
            f"{abs(base_move):.3f} nats); the variants go {moved}. "
            + (f"The gap of {_names(wider)} is larger at the longer context (difference of differences: "
               + ", ".join(f"{r.change:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]" for r in change.itertuples()
                           if r.variant in wider) + " nats)" if wider else
               "No variant's gap changes significantly with the context")
            + (", and that is the baseline getting worse, not the variants getting better: with four times as many "
               "positions to attend over and a quarter as many sequences per step, the baseline has more distant "
               "positions to learn to ignore, and the recency prior spares the variants that." if wider and mostly_base
               else "."))


def relatives(t, struct_r2, T):
    """Chapter 6's last section: each variant beside its published relative, in words its verdict allows."""
    def said(tag):
        r = t.loc[tag]
        return f"{r['diff']:+.4f} nats [{r.ci_lo:+.4f}, {r.ci_hi:+.4f}], {r.verdict}"

    def reads(tag):
        return {"better": "helps this model", "worse": "hurts this model",
                "matches": "makes no measurable difference here",
                "inconclusive": "has an effect our seeds cannot resolve"}[t.loc[tag, "verdict"]]

    return f"""
- **ALiBi** {{cite:p}}`press2022alibi` replaces position embeddings by fixed per-head linear distance penalties and
  extrapolates to longer contexts than trained on. Here it is added on top of learned position embeddings, at a
  fixed context, so extrapolation is not tested; what remains is a built-in preference for near keys, which
  {reads('alibi')}: `alibi` {said('alibi')}; the query-dependent `soft_window` {said('soft_window')}. The probes
  above say how much of a head's look-back distance the baseline's stream already predicts (R² {struct_r2:.2f}).
- **Adaptive Attention Span** {{cite:p}}`sukhbaatar2019adaptive` learns one span per head to save memory and compute
  in character models with contexts of thousands of tokens, at equal loss. `learned_span` {said('learned_span')};
  the query-dependent `hard_window` {said('hard_window')}. The savings need long contexts: chapter 2 measures how many
  tiles a block-sparse kernel would skip at our context of {T}.
- **Forgetting Transformer** {{cite:p}}`lin2025forgetting` adds a data-dependent forget gate, a learned decay of the
  logits with distance, and reports gains in language modelling at hundreds of millions of parameters and long
  contexts. Our `soft_window` is the closest relative (a decay slope chosen by the query), and it
  {reads('soft_window')}: {said('soft_window')}.
- **Gated Attention for LLMs** {{cite:p}}`qiu2025gated` finds that a sigmoid gate on each head's output improves
  1.7 B-parameter models and removes attention sinks, with billions of tokens. Here the plain gate
  {reads('output_gate')} (`output_gate` {said('output_gate')}) and the structure-driven gate
  {reads('structure_gate')} (`structure_gate` {said('structure_gate')}).
- **Selective Attention** {{cite:p}}`leviathan2024selective` lets a token mask later tokens' attention to earlier
  ones and improves perplexity and memory at scale. `key_importance`, a learned per-key logit offset carried across
  layers, is its closest relative here, and it {reads('key_importance')}: {said('key_importance')}. The original
  author expected no gain, since a model can move a key's vector where queries ignore it.
"""


def fit_lines(fits, original_tokens):
    """One bullet per variant of the regime fit: the slope per doubling, the extrapolation and its verdict."""
    out = []
    for v, f in fits.items():
        reach = (f"the fitted line reaches 0 at about {f['zero_tokens'] / 1e6:,.3g} M tokens" if f["zero_tokens"] else
                 "the fitted line already reaches 0 within the budgets run" if f["slope"] > 0 else
                 "the fitted line does not reach 0")
        pw = f.get("power")
        power = (f"; a power law |gap| ∝ tokens^−{pw['alpha']:.2f} instead would give {pw['pred']:+.3f} there and "
                 "never reach 0" if pw and pw["alpha"] > 0 else "")
        budgets = ", ".join(f"{b:g}×" for b in f["budgets"])
        out.append(f"- **{v}**: slope {f['slope']:+.4f} nats per doubling [{f['slope_lo']:+.4f}, "
                   f"{f['slope_hi']:+.4f}] (p (Holm) {f['p (Holm)']:.3f}) over budgets {budgets}; {reach}; "
                   f"extrapolated to {original_tokens / 1e6:.0f} M tokens: {f['pred']:+.3f} "
                   f"[{f['pred_lo']:+.3f}, {f['pred_hi']:+.3f}]{power} → hypothesis 3 **{f['h3']}** for {v}.")
    return "\n".join(out)


def spans_line(rho):
    """Whether the hard window's spans shrink where the baseline looks near: Spearman ρ per layer, in words."""
    r = rho["spearman rho"]
    strong = r.abs().max()
    said = ", ".join(f"{x:+.2f}" for x in r)
    return (f"Hard-window spans against the baseline's nearest look-back, per layer (Spearman ρ over tokens in the "
            f"second half of the context): {said}. "
            + ("No layer's ρ reaches 0.5 in size: the spans a window model picks follow where the baseline looks only "
               "weakly." if strong < 0.5 else "In some layer the spans follow where the baseline looks closely."))

