"""Rewrite the README's results and speed sections from the committed results files.

    python scripts/readme_results.py [--preset cpu]

Reads results/<preset>/summary.json (chapter 6), results/<preset>/book_run.json (a timed book run) and
results/bench/*.json (`tinygpt bench --json`); every number in those README sections comes from
them, so the README never states a result by hand.
"""

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table_rows(rows):
    return [f"| {r['tag']} | {r['n']} | {r['mean']:.4f} ± {r['std']:.4f} | {r['diff']:+.4f} | "
            f"[{r['ci_lo']:+.4f}, {r['ci_hi']:+.4f}] | {r['p (Holm)']:.3f} | {r['verdict']} |" for r in rows]


def results_section(preset):
    path = ROOT / "results" / preset / "summary.json"
    if not path.exists():
        return f"_No summary for preset {preset} yet: run `tinygpt book run --preset {preset}`._"
    s = json.loads(path.read_text())
    header = ["| variant | n | best val loss | difference | 95% interval | p (Holm) | verdict |",
              "|---|---:|---:|---:|---|---:|---|"]
    lines = [f"Validation loss in nats/char over the whole validation split at the best checkpoint, mean ± std over "
             f"seeds; difference to the baseline with its 95% Welch interval and Holm-adjusted p over the table "
             f"(\"better\"/\"worse\": the interval excludes 0 and p (Holm) < 0.05; \"matches\": it covers 0 and is "
             f"narrower than {s['match_width']} nats). From `results/{preset}/summary.json` (chapter 6)."]
    gpu = s.get("gpu")
    if gpu:
        rows = [r for r in gpu["table"] if r["tag"] != "baseline"]
        base = next(r for r in gpu["table"] if r["tag"] == "baseline")
        final = {r["tag"]: r for r in gpu["final"]}
        lines += ["", f"**At the gpu preset, the original's scale** (about {gpu['tokens'] / 1e6:.0f} M tokens seen; "
                  f"{gpu['runs']} runs on a lent H200, `results/gpu/`):", "", *header,
                  f"| baseline | {base['n']} | {base['mean']:.4f} ± {base['std']:.4f} | | | | |", *_table_rows(rows),
                  "", "At the final checkpoint (iteration 5,000), after every model has over-fitted: " + "; ".join(
                      f"{t} {r['diff']:+.3f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}] ({r['verdict']})"
                      for t, r in final.items() if t != "baseline") + "."]
        closed = [r for r in gpu.get("head_start", []) if r.get("closed_at")]
        if closed:
            lines.append("The variants' head start (" + ", ".join(f"{r['tag']} {r['gap_first']:+.2f}" for r in closed)
                         + " nats at the first evaluation) is gone by iteration "
                         + ", ".join(sorted({f"{r['closed_at']:,}" for r in closed})) + ".")
    rows = [r for r in s["table"] if r["tag"] != "baseline"]
    base = next(r for r in s["table"] if r["tag"] == "baseline")
    lines += ["", f"**At the {preset} preset** (about 1.5 M tokens seen):", "", *header,
              f"| baseline | {base['n']} | {base['mean']:.4f} ± {base['std']:.4f} | | | | |", *_table_rows(rows)]
    h1, h2 = s["h1"], s["h2"]
    spans = h1["per_info"]["spans"]
    more = "; ".join(f"{r['variant']} {r['gap_full']:+.3f} → {r['gap_more']:+.3f} (change {r['change']:+.3f} "
                     f"[{r['lo']:+.3f}, {r['hi']:+.3f}])" for r in h2["more_text"])
    lines += ["", f"- **The information is already in the residual stream: {h1['verdict']}.** Probes read the "
              f"learned spans from the baseline's stream with held-out R² {spans['r2']:.2f}, against "
              f"{spans['token+position']:.2f} from the token and its position alone and {spans['random init']:.2f} "
              "from an untrained model's stream; contradicted at the cpu budgets where the windows, which inject the "
              "spans, are better ("
              + (", ".join(spans["contradicted_in"]) or "nowhere") + ").",
              f"- **The data are too small: {h2['verdict']}.** From tiny Shakespeare's training split to the complete "
              f"works (4.5× the text), the gap to the baseline moves: {more} nats.",
              "", "Chapter 6 of the book shows the figures; the conclusions page discusses them."]
    return "\n".join(lines)


def regime_section(preset):
    """The regime table straight from the finished runs' files (results/<preset>/*+iters*/, *+ctx*/)."""
    from tinygpt.book import regime
    reg = regime.load_regime(preset)
    metric = regime.metric_for(reg) if len(reg) else "val_loss_full"
    pts = regime.by_budget(reg, metric) if len(reg) else []
    if not len(pts):
        return "_No regime runs yet: `python scripts/train_regime.py`._"
    lines = [f"Difference to the baseline of the same budget (× the {preset} preset's iterations) in the loss of "
             f"{regime.METRIC_WORDS[metric]}, mean over seeds with its 95% Welch interval "
             f"(from `results/{preset}/*+iters*/`; {len(reg)} runs):", "",
             "| variant | budget | tokens seen | seeds (variant / baseline) | difference | 95% interval "
             "| verdict (Holm) |",
             "|---|---:|---:|---|---:|---|---|"]
    for r in pts.sort_values(["variant", "budget"]).itertuples():
        lines.append(f"| {r.variant} | {r.budget:g}× | {r.tokens / 1e6:.1f} M | {r.n} / {r.n_base} | {r.diff:+.4f} | "
                     f"[{r.lo:+.4f}, {r.hi:+.4f}] | {r.verdict} |")
    summary = ROOT / "results" / preset / "summary.json"
    h3 = json.loads(summary.read_text()).get("h3", {}) if summary.exists() else {}
    if h3.get("fits"):
        where = summary.relative_to(ROOT)
        lines += ["", f"Fitted against log₂ of the tokens seen (chapter 6, section 2.2; `{where}`), the slope per "
                  "doubling and its 95% interval: " + "; ".join(
                      f"{v} {f['slope']:+.3f} [{f['slope_lo']:+.3f}, {f['slope_hi']:+.3f}] over "
                      f"{', '.join(f'{b:g}×' for b in f['budgets'])} ({f['h3']})" for v, f in h3["fits"].items())
                  + f". Hypothesis 3 (the advantage fades with training): **{h3['verdict']}**."]
    ctx = regime.by_context(reg, metric)
    if len(ctx) and ctx.block_size.nunique() > 1:
        lines += ["", "At a longer context (same budget and tokens per iteration):", "",
                  "| variant | context | difference | 95% interval |", "|---|---:|---:|---|"]
        lines += [f"| {r.variant} | {r.block_size} | {r.diff:+.4f} | [{r.lo:+.4f}, {r.hi:+.4f}] |"
                  for r in ctx.sort_values(["variant", "block_size"]).itertuples()]
        change = regime.context_change(reg, metric)
        if len(change):
            lines += ["", "The gap at the longer context minus the gap at the preset's (difference of differences, "
                      "95% Welch–Satterthwaite interval): " + "; ".join(
                          f"{r.variant} {r.change:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]" for r in change.itertuples())
                      + f". The baseline itself: {change.base_short.iloc[0]:.3f} at context {change.short.iloc[0]}, "
                      f"{change.base_long.iloc[0]:.3f} at {change.long.iloc[0]}."]
    return "\n".join(lines)


STEP_TARGET = {"soft_window": 1.10, "alibi": 1.10, "key_importance": 1.10}  # issue 16; every other variant 1.30


def step_table(before, before_path, after, after_path):
    """The training step of every variant against the baseline, before and after the fused offsets."""
    if not after:
        return []
    r0 = after["rows"][0]
    n = after.get("processes", 1)
    lines = [f"`tinygpt bench --preset {after['preset']} --variant all --rounds {after['rounds']} --iters "
             f"{after['iters']}" + (f" --processes {n}" if n > 1 else "") + f"` on {r0['device']} ({r0['threads']} "
             "threads), " + ("one process" if n == 1 else f"{n} fresh processes one after the other, their rounds "
                            "pooled") + ": each round times the "
             f"baseline, then each variant followed by the baseline again; a variant's ratio is its time over the "
             f"mean of the two baseline timings around it, median over rounds, with the quartiles, and the ratio "
             f"of the fastest rounds (contention only slows a timing down) "
             f"(`{after_path}`). \"Before\" is the code before issue 16's work (commit f7f64cd^, whose bench "
             f"took one baseline timing per round)" + (f" (`{before_path}`)" if before else "") + ".", "",
             "| variant | before: ms/iter | × baseline | after: ms/iter | × baseline | quartiles | fastest rounds | "
             "target | met |", "|---|---:|---:|---:|---:|---|---:|---:|---|"]
    old = {r["variant"]: r for r in before["rows"]} if before else {}
    for r in after["rows"]:
        o, v = old.get(r["variant"]), r["variant"]
        target = None if v == "baseline" else STEP_TARGET.get(v, 1.30)
        lines.append(f"| {v} | {o['ms_per_iter']:.1f} | {o['ratio']:.2f} | " if o else f"| {v} | | | ")
        met = "— | — |" if target is None else f"≤ {target:.2f} | {'yes' if r['ratio'] <= target else 'no'} |"
        lines[-1] += (f"{r['ms_per_iter']:.1f} | {r['ratio']:.2f} | "
                      + (f"{r['ratio_q1']:.2f}–{r['ratio_q3']:.2f}" if "ratio_q1" in r else "") + " | "
                      + (f"{r['ratio_fastest']:.2f}" if "ratio_fastest" in r else "") + " | " + met)
    return lines + [""]


def memory_table(before, before_path, after, after_path):
    """Peak memory of a training step at block_size 1024, before and after."""
    if not after:
        return []
    old = {r["variant"]: r for r in before["rows"]} if before else {}
    lines = ["Peak memory of a training step at `--set block_size=1024` (cpu preset otherwise): the rise of the "
             "resident set over two steps, each variant in a fresh process whose C allocator maps every block of "
             f"64 KiB or more and returns it on free (`{after_path}`" + (f", `{before_path}`" if before else "")
             + ").", "", "| variant | before: MB | × baseline | after: MB | × baseline |", "|---|---:|---:|---:|---:|"]
    for r in after["rows"]:
        o = old.get(r["variant"])
        was = f"{o['peak_mem_mb']:.0f} | {o['peak_mem_mb'] / old['baseline']['peak_mem_mb']:.2f} | " if o else "| | "
        lines.append(f"| {r['variant']} | {was}{r['peak_mem_mb']:.0f} | {r['mem_ratio']:.2f} |")
    return lines + [""]


def speed_section():
    lines = []
    for path in sorted((ROOT / "results").glob("*/book_run.json")):
        run = json.loads(path.read_text())
        lines += [f"`{run['command']}` from scratch (no finished runs) on {run['machine']}: "
                  f"**{run['wall_s'] / 60:.0f} min** wall clock (`{path.relative_to(ROOT)}`).", "",
                  "| stage | status | minutes |", "|---|---|---:|"]
        if run.get("training_seconds"):
            lines.append(f"| training the {run['training_runs']} planned runs, {run['jobs']} at a time | ok | "
                         f"{run['training_seconds'] / 60:.1f} |")
        lines += [f"| {n} | {e['status']} | {e['seconds'] / 60:.1f} |" for n, e in run["notebooks"].items()]
        if run.get("training_seconds"):
            lines += ["", f"The notebooks ran {run['jobs']} at a time after the training stage; their minutes "
                          "overlap, and chapter 06 trains its own data-size runs."]
        lines.append("")
    bench = ROOT / "results" / "bench"

    def load(name):
        path = bench / name
        return (json.loads(path.read_text()), path.relative_to(ROOT)) if path.exists() else (None, None)

    lines += step_table(*load("cpu_before.json"), *load("cpu.json"))
    lines += memory_table(*load("cpu_1024_before.json"), *load("cpu_1024.json"))
    for name in ("nanogpt_whole_cpu.json", "nanogpt_whole400_cpu.json"):
        w, path = load(name)
        if w:
            lines += [f"`python scripts/bench_nanogpt.py --whole --iters {w['max_iters']} --pairs {w['pairs']}`: the "
                      f"whole command, `tinygpt train --preset {w['preset']} --set max_iters={w['max_iters']}` against "
                      f"nanoGPT's train.py (transcribed: same model, data, schedule, evaluations and checkpoints), "
                      f"each a fresh process, in alternating order, median of {w['pairs']} pairs (`{path}`): nanoGPT "
                      f"{w['wall_s']['nanoGPT']:.1f} s, tinygpt {w['wall_s']['tinygpt']:.1f} s, **ratio "
                      f"{w['ratio_tinygpt_to_nanogpt']:.2f}** (per pair "
                      + ", ".join(f"{r:.2f}" for r in w["pair_ratios"]) + ").", ""]
    b, path = load("nanogpt_cpu.json")
    if b:
        ms = b["ms_per_iter"]
        lines += [f"`python scripts/bench_nanogpt.py --preset {b['preset']}`: a training step (batch draw, "
                  f"forward, backward, clipping, AdamW) of tinygpt and of nanoGPT's own model.py and train.py "
                  f"loop body, same settings, same process ({b['threads']} threads), median of {b['rounds']} "
                  f"interleaved rounds × {b['iters']} steps (`{path}`): nanoGPT {ms['nanoGPT']:.1f} ms, tinygpt "
                  f"{ms['tinygpt']:.1f} ms, ratio {b['ratio_tinygpt_to_nanogpt']:.2f}.", ""]
    return "\n".join(lines) or "_No measurements yet._"


def replace(text, name, body):
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def record_book_run(run_log, machine):
    """results/<preset>/book_run.json from the run log `tinygpt book run` wrote (its last command)."""
    log = json.loads(Path(run_log).read_text())
    last = log["last_command"]
    sets = " ".join(f"--set {k}={v}" for k, v in last["parameters"].items() if k != "preset")
    command = f"tinygpt book run --preset {last['preset']} --jobs {last['jobs']}" + (f" {sets}" if sets else "")
    run = {"command": command,
           "machine": machine, "wall_s": last["wall_seconds"], "jobs": last["jobs"],
           "training_seconds": last.get("training_seconds"), "training_runs": last.get("training_runs"),
           "finished_at": last["finished_at"],
           "notebooks": {n: {"status": log["notebooks"][n]["status"], "seconds": log["notebooks"][n]["seconds"]}
                         for n in last["notebooks"]}}
    out = ROOT / "results" / last["preset"] / "book_run.json"
    out.write_text(json.dumps(run, indent=1) + "\n")
    print(f"wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", help="whose results to summarise (default cpu)")
    p.add_argument("--record-book-run", metavar="RUN_LOG",
                   help="first write results/<preset>/book_run.json from this book/_run_log.json")
    p.add_argument("--machine", default="2-core CPU (AMD EPYC, AVX2), 24 GB", help="machine named in book_run.json")
    args = p.parse_args()
    if args.record_book_run:
        import torch
        record_book_run(args.record_book_run, f"{args.machine}, torch {torch.__version__}")
    readme = ROOT / "README.md"
    text = replace(readme.read_text(), "results", results_section(args.preset))
    text = replace(text, "regime", regime_section(args.preset))
    readme.write_text(replace(text, "speed", speed_section()))
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
