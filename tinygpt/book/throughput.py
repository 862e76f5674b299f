"""How many runs to pack on one GPU, and how well the packed runs used it.

    python -m tinygpt.book.throughput probe --preset gpu --json probe.json   # prints the chosen N
    python -m tinygpt.book.throughput report RESULTS_DIR --preset gpu --run-log book/_run_log.json

`probe` times the preset's training step in one process on every step path (eager, compiled, one
CUDA graph, both: tinygpt/step.py) and keeps the one whose whole run, compile and capture included,
is shortest; then in N processes at once on that path (N = 1, 2, 4, 8, stopping when the total stops
growing by 10 %). `report` reads the
finished runs: tokens/s of each, tokens/s of all together over the training stage's wall time,
and the model FLOPs utilisation (MFU) against the bf16 dense peak measured on an H200 here
(~790 TFLOP/s; device README, KINDS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

H200_BF16_PEAK = 790e12  # FLOP/s: an 8192³ bf16 matmul measured on the lent H200 (KINDS.md)


def flops_per_token(cfg):
    """Training FLOPs per token, nanoGPT's estimate_mfu: 6N for the weights + 12·L·H·Q·T for attention."""
    from ..model import GPT
    m = cfg.model
    import torch
    with torch.device("meta"):  # parameter count without allocating the weights
        n = GPT(m).get_num_params()
    return 6 * n + 12 * m.n_layer * m.n_head * (m.n_embd // m.n_head) * m.block_size


def mfu(tokens_per_s, cfg, peak=H200_BF16_PEAK):
    return tokens_per_s * flops_per_token(cfg) / peak


# ------------------------------------------------------------------------------------------ probe

PATHS = ("eager", "compile", "graphs", "compile+graphs")  # step.CHOICES but auto


def probe(preset="gpu", counts=(1, 2, 4, 8), seconds=4.0, gain=1.10, log=print, paths=PATHS):
    """Measure and choose: {step, paths (ms per step, warm-up s of each), rows per N, n}.

    One process times every step path (step.py); the path chosen is the one whose whole run (max_iters
    steps plus its compile and capture time) is shortest. Then N processes at once run that path.
    """
    from ..bench import time_steps, tokens_per_s_in_processes
    from ..presets import make_config
    from .executors import pinned_pool, visible_gpus
    cfg = make_config(preset)
    tokens = cfg.batch_size * cfg.model.block_size
    out = {"preset": preset, "tokens_per_step": tokens, "flops_per_token": flops_per_token(cfg), "paths": {}}
    with pinned_pool(1, visible_gpus()[:1]) as pool:  # a fresh process, as a training worker is
        for path in paths:
            try:
                warm, n, t = pool.submit(time_steps, preset, seconds, path).result()
            except Exception as e:  # a path that fails here (a capture, a compile) is not chosen
                out["paths"][path] = {"error": f"{type(e).__name__}: {e}"[:300]}
                log(f"one process, {path}: failed ({out['paths'][path]['error']})")
                continue
            ms = 1000 * t / n
            out["paths"][path] = {"ms": round(ms, 3), "warm_s": round(warm, 1),
                                  "run_s": round(ms / 1000 * cfg.max_iters + warm, 1)}
            log(f"one process, {path}: {ms:.1f} ms/step after {warm:.0f} s of warm-up; "
                f"{cfg.max_iters} steps in {out['paths'][path]['run_s']:.0f} s")
    timed = {k: v for k, v in out["paths"].items() if "ms" in v}
    if not timed:
        raise RuntimeError(f"no step path ran: {out['paths']}")
    out["step"] = min(timed, key=lambda k: timed[k]["run_s"])
    out["compile"] = out["step"].startswith("compile")  # what device_book.sh read before the step paths
    one = tokens / timed[out["step"]]["ms"] * 1000
    best = {"n": 1, "tokens_per_s": round(one), "per_run_tokens_per_s": round(one), "mfu": round(mfu(one, cfg), 4)}
    rows = [best]  # one process: measured above
    log(f"1 at once: {one:,.0f} tokens/s, MFU {mfu(one, cfg):.1%}")
    for n in [c for c in counts if c > 1]:  # n processes on one GPU
        total = sum(tokens_per_s_in_processes(n, preset, seconds, out["step"],
                                              pool=lambda k: pinned_pool(k, visible_gpus()[:1])))
        rows.append({"n": n, "tokens_per_s": round(total), "per_run_tokens_per_s": round(total / n),
                     "mfu": round(mfu(total, cfg), 4)})
        log(f"{n} at once: {total:,.0f} tokens/s in all, {total / n:,.0f} per run, MFU {mfu(total, cfg):.1%}")
        if best is not None and total < gain * best["tokens_per_s"]:
            break
        best = rows[-1]
    out.update(rows=rows, n=best["n"])
    return out


# ------------------------------------------------------------------------------------------- plan

def run_flops(cfg):
    """Training FLOPs of one run: its steps, plus its periodic evaluations (forward only: a third of a step)."""
    tokens = cfg.batch_size * cfg.model.block_size * cfg.gradient_accumulation_steps
    evals = (cfg.max_iters // cfg.eval_interval + 1) * 2 * cfg.eval_iters * cfg.batch_size * cfg.model.block_size
    return flops_per_token(cfg) * (cfg.max_iters * tokens + evals / 3)


def planned_runs(preset, chapters=None, sets=None):
    """The runs `book run --preset PRESET --notebooks CHAPTERS --set …` trains (study.chapter_runs)."""
    from .runner import find_notebooks, notebook_parameters
    from .study import chapter_runs
    planned = {}
    for path in find_notebooks(select=chapters or None):
        p = notebook_parameters(path, {"preset": preset, **(sets or {})})
        planned.update({(r.name, r.seed): r for r in chapter_runs(path.stem, p)})
    return list(planned.values())


def plan(preset, chapters=None, sets=None, tokens_per_s=None):
    """{runs, flops, and with a measured rate (training tokens/s of all processes together) minutes}."""
    from ..presets import make_config
    runs = planned_runs(preset, chapters, sets)
    flops = sum(run_flops(r.config()) for r in runs)
    out = {"runs": len(runs), "flops": flops, "names": sorted({r.name for r in runs})}
    if tokens_per_s:  # the rate is the baseline's: variants that add to the scores run slower (a margin)
        out["minutes"] = flops / (tokens_per_s * flops_per_token(make_config(preset))) / 60
    return out


def fit_seeds(preset, chapters, sets, tokens_per_s, seconds, max_seeds):
    """The most seeds (≤ max_seeds, at least 1) whose planned runs train within `seconds` at the rate."""
    for seeds in range(max_seeds, 1, -1):
        if plan(preset, chapters, {**sets, "n_seeds": seeds, "baseline_seeds": seeds}, tokens_per_s)["minutes"] \
                * 60 <= seconds:
            return seeds
    return 1


# ----------------------------------------------------------------------------------------- report

def report(results_dir, preset, run_log=None, peak=H200_BF16_PEAK):
    """Rows (one per finished run) and a total, from the runs' metrics and the run log's training time."""
    from ..checkpoint import read_json
    from ..presets import TrainConfig
    rows = []
    for metrics in sorted(Path(results_dir, preset).glob("*/seed*/metrics.json")):
        m, cfg = read_json(metrics), TrainConfig.from_dict(read_json(metrics.parent / "config.json"))
        tokens = m["iters"] * cfg.batch_size * cfg.model.block_size * cfg.gradient_accumulation_steps
        rate = m.get("tokens_per_s") or 0.0
        rows.append({"run": f"{metrics.parent.parent.name}/{metrics.parent.name}", "iters": m["iters"],
                     "tokens": tokens, "elapsed_s": m["elapsed_s"], "tokens_per_s": rate,
                     "mfu": mfu(rate, cfg, peak), "flops": tokens * flops_per_token(cfg),
                     "val_loss_full": m.get("val_loss_full"), "device": m.get("device"), "dtype": m.get("dtype")})
    total = {"runs": len(rows), "tokens": sum(r["tokens"] for r in rows)}
    log = read_json(run_log) if run_log and Path(run_log).exists() else {}
    wall = log.get("last_command", {}).get("training_seconds")
    if wall:  # every run trained in the training stage: all of them together, over its wall time
        total.update(training_seconds=wall, tokens_per_s=total["tokens"] / wall,
                     mfu=sum(r["flops"] for r in rows) / wall / peak)
    return {"preset": preset, "peak_flops": peak, "rows": rows, "total": total}


def format_report(rep):
    lines = ["| run | iters | s | tokens/s | MFU | best val loss |", "|---|---:|---:|---:|---:|---:|"]
    for r in rep["rows"]:
        loss = f"{r['val_loss_full']:.4f}" if r["val_loss_full"] is not None else "-"
        lines.append(f"| {r['run']} | {r['iters']} | {r['elapsed_s']:.0f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['mfu']:.1%} | {loss} |")
    t = rep["total"]
    if "tokens_per_s" in t:
        lines.append(f"| **all {t['runs']} at once** | | {t['training_seconds']:.0f} | {t['tokens_per_s']:,.0f} | "
                     f"{t['mfu']:.1%} | |")
    lines.append(f"\nMFU against {rep['peak_flops'] / 1e12:.0f} TFLOP/s (bf16 dense); FLOPs per token from "
                 "nanoGPT's estimate (6N + 12·L·H·Q·T); a run's tokens/s is the median of its evaluation intervals.")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinygpt.book.throughput", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("probe", help="time the preset's step with 1, 2, 4, 8 processes; print the best N")
    s.add_argument("--preset", default="gpu")
    s.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement (default 4)")
    s.add_argument("--max", type=int, default=8, help="the most processes to try (default 8)")
    s.add_argument("--json", help="also write the measurements here")
    s = sub.add_parser("plan", help="the runs some chapters train, their FLOPs and, at a rate, their minutes")
    s.add_argument("--preset", default="gpu")
    s.add_argument("chapters", nargs="*", help="notebook prefixes (default: all)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as in `book run --set`")
    s.add_argument("--tokens-per-s", type=float, help="training tokens/s of all runs together (probe's total)")
    s.add_argument("--fit", type=float, metavar="SECONDS",
                   help="with --seeds and --tokens-per-s: print only the most seeds (≤ --seeds, ≥ 1) whose runs "
                        "train within SECONDS")
    s.add_argument("--seeds", type=int, help="seeds per variant and of the baseline (n_seeds, baseline_seeds)")
    s.add_argument("--json")
    s = sub.add_parser("report", help="tokens/s and MFU of the finished runs, as a markdown table")
    s.add_argument("results_dir")
    s.add_argument("--preset", default="gpu")
    s.add_argument("--run-log", help="book/_run_log.json of the command that trained them (for the total)")
    s.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    if args.cmd == "probe":
        counts = [n for n in (1, 2, 4, 8, 16) if n <= args.max]
        out = probe(args.preset, counts, args.seconds, log=lambda s: print(s, file=sys.stderr))
        print(out["n"])
    elif args.cmd == "plan":
        from .runner import parse_sets
        sets = parse_sets(args.set)
        if args.fit is not None:
            if not (args.seeds and args.tokens_per_s):
                p.error("--fit needs --seeds and --tokens-per-s")
            print(fit_seeds(args.preset, args.chapters, sets, args.tokens_per_s, args.fit, args.seeds))
            return 0
        if args.seeds:
            sets.update(n_seeds=args.seeds, baseline_seeds=args.seeds)
        out = plan(args.preset, args.chapters, sets, args.tokens_per_s)
        minutes = f", {out['minutes']:.1f} min" if "minutes" in out else ""
        print(f"{out['runs']} runs ({', '.join(out['names'])}): {out['flops'] / 1e15:.1f} PFLOP{minutes}")
    else:
        out = report(args.results_dir, args.preset, args.run_log)
        print(format_report(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
