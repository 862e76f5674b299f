"""Everything issue 29 asks of a lent GPU's speed, side by side in one process (and a few spawned ones).

    python scripts/device_speed.py --preset gpu --out DIR [--deadline 220]

Sections, in this order (each writes DIR/speed.json and DIR/speed.md as soon as it ends, and a failure
is recorded and the next section runs; one that would start too close to the deadline is skipped):

  paths      the baseline's step on every step path (eager, compile, graphs, compile+graphs), interleaved;
             the fastest is the one whose whole run (steps plus compile and capture) is shortest
  run        one whole run of the preset on the fastest path, its evaluation time split out
  checks     the step paths against each other (losses of 19 steps, dropout 0) and, on CUDA, the hard
             window's two-pass FlexAttention dropout against the dense formula with the same mask
  eval       the periodic estimate and the whole-split pass: one forward pass per batch against stacked
  variants   every variant's step and peak memory against the baseline's, eager and with the CUDA graph
  nanogpt    nanoGPT's train.py step (its model, data loading, AdamW; eager and compiled) against ours
  processes  tokens/s of 1, 2 and 4 processes sharing the device on the fastest path

Needs torch and numpy only (the device image lacks the notebook tool chain).
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from tinygpt import bench as B  # noqa: E402
from tinygpt import train as tr  # noqa: E402
from tinygpt.data import load_dataset  # noqa: E402
from tinygpt.device import autocast_context, flush_denormals, keep_freed_memory, resolve_device  # noqa: E402
from tinygpt.presets import make_config  # noqa: E402
from tinygpt.step import StepPath, step_path  # noqa: E402
from tinygpt.variants import VARIANTS  # noqa: E402

PATHS = ("eager", "compile", "graphs", "compile+graphs")
TARGETS = {"run_s": 40, "nanogpt_ratio": 2.0, "rank_one": 1.15, "other": 1.30, "memory": 1.2}
RANK_ONE = ("soft_window", "key_importance", "alibi")  # offsets of rank one: extra q/k channels
SECTIONS = {"paths": 30, "run": 45, "checks": 20, "eval": 10, "variants": 30, "nanogpt": 25, "processes": 25}


def interleaved(fns, rounds, iters, device):
    """{name: [ms per step in each round]}: every function timed in turn, round after round."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            B._sync(device)
            t0 = time.perf_counter()
            for i in range(iters):
                loss = fn()
                if i % 10 == 9 and isinstance(loss, torch.Tensor):  # training reads the loss every 10 steps on CUDA
                    loss.item()
            B._sync(device)
            times[name].append(1000 * (time.perf_counter() - t0) / iters)
    return times


class Speed:
    def __init__(self, args):
        self.args, self.t0 = args, time.perf_counter()
        self.cfg = make_config(args.preset)
        self.device = resolve_device(self.cfg.device)
        self.cuda = self.device.startswith("cuda")
        self.ctx, self.dtype = autocast_context(self.device, self.cfg.dtype)
        if not self.cuda:
            flush_denormals()
            keep_freed_memory()
        self.capture = (lambda body: body) if args.fake_graphs else B.cuda_graph
        self.tokens = self.cfg.batch_size * self.cfg.model.block_size
        self.result = {"meta": {
            "preset": args.preset, "device": torch.cuda.get_device_name(0) if self.cuda else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "threads": torch.get_num_threads(), "tokens_per_step": self.tokens, "fake_graphs": args.fake_graphs,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}}
        self.best = "eager"

    def path(self, name):
        if name == "graphs" and self.args.fake_graphs:
            return StepPath(False, True)
        return step_path(self.cfg, self.device, dtype=self.dtype, choice=name)

    def left(self):
        return self.args.deadline - (time.perf_counter() - self.t0)

    def section(self, name, fn, needs_s):
        if self.left() < needs_s:
            self.result[name] = {"skipped": f"{self.left():.0f} s left before the deadline, {needs_s} s needed"}
        else:
            t0 = time.perf_counter()
            try:
                self.result[name] = fn()
            except Exception as e:  # one measurement's failure must not lose the others
                import traceback
                self.result[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
            self.result[name]["section_s"] = round(time.perf_counter() - t0, 1)
        print(f"== [{time.perf_counter() - self.t0:.0f} s] {name}: {json.dumps(self.result[name])[:400]}",
              flush=True)
        self.write()

    def write(self):
        out = self.args.out
        try:
            md = markdown(self.result)
        except Exception as e:  # the table must not cost the measurements: speed.json has them all
            md = f"speed.md could not be written ({type(e).__name__}: {e}); see speed.json"
        for name, text in (("speed.json", json.dumps(self.result, indent=1, default=str)), ("speed.md", md)):
            tmp = os.path.join(out, f".{name}.tmp")
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, os.path.join(out, name))

    # ------------------------------------------------------------------ sections

    def checks(self):
        """The same 20 steps (fixed batches, dropout 0) on each path: losses equal to rounding."""
        cfg = make_config(self.args.preset, dropout=0.0)
        g = torch.Generator().manual_seed(0)
        data = [tuple(torch.randint(cfg.model.vocab_size, (cfg.batch_size, cfg.model.block_size), generator=g)
                      .to(self.device) for _ in range(2)) for _ in range(20)]
        out = {}
        for name in self.args.paths:
            it = iter(data[1:] + data[:1])
            fn = B._step_fn(cfg, self.device, self.ctx, self.path(name), self.capture, batches=lambda: next(it))
            out[name] = [fn().item() for _ in range(19)]
        ref = out[self.args.paths[0]]
        res = {"losses": out, "max_abs_diff": {k: max(abs(a - b) for a, b in zip(v, ref)) for k, v in out.items()}}
        if self.cuda:
            res["flex_dropout"] = flex_dropout_check(self.device)
        return res

    def paths(self):
        fns, warm = {}, {}
        for name in self.args.paths:
            t0 = time.perf_counter()
            try:
                fns[name] = B._step_fn(self.cfg, self.device, self.ctx, self.path(name), self.capture)
                for _ in range(4):  # GraphStep.WARMUP eager steps, the capture, one replay
                    fns[name]()
                B._sync(self.device)
            except Exception as e:
                warm[name] = f"{type(e).__name__}: {e}"[:300]
                fns.pop(name, None)
                continue
            warm[name] = round(time.perf_counter() - t0, 1)
        times = interleaved(fns, self.args.rounds, self.args.iters, self.device)
        ms = {k: statistics.median(v) for k, v in times.items()}
        base = ms.get("eager") or min(ms.values())
        rows = {k: {"ms": round(ms[k], 3), "x_eager": round(ms[k] / base, 3), "warm_s": warm[k],
                    "run_steps_s": round(ms[k] / 1000 * self.cfg.max_iters + warm[k], 1)} for k in ms}
        self.best = min(rows, key=lambda k: rows[k]["run_steps_s"])
        return {"rows": rows, "failed": {k: v for k, v in warm.items() if isinstance(v, str)}, "best": self.best,
                "rounds_ms": times}

    def run(self):
        cfg = make_config(self.args.preset, **({"max_iters": self.args.run_iters,
                                                "lr_decay_iters": self.args.run_iters} if self.args.run_iters else {}))
        os.environ["TINYGPT_STEP"] = self.best
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            hist = tr.train(cfg, d, progress=False, log=lambda *a: print(*a, flush=True))
            wall = time.perf_counter() - t0
            metrics = json.load(open(os.path.join(d, "metrics.json")))
        evals, prev, train_s = hist["evals"], 0, 0.0
        for e in evals:  # each evaluation's tokens/s is over the steps since the previous one
            if e["tokens_per_s"]:
                train_s += (e["iter"] - prev) * self.tokens / e["tokens_per_s"]
            prev = e["iter"]
        return {"iters": cfg.max_iters, "wall_s": round(wall, 1), "train_s": round(train_s, 1),
                "other_s": round(wall - train_s, 1), "other_share": round(1 - train_s / wall, 3),
                "step_path": metrics["step_path"], "best_val_loss": metrics["best_val_loss"],
                "val_loss_full": metrics["val_loss_full"], "target_s": TARGETS["run_s"]}

    def eval(self):
        cfg, data = self.cfg, load_dataset(self.cfg.dataset)
        torch.manual_seed(0)
        model = tr.GPT(cfg.model).to(self.device)

        def passes(fn, tokens):  # tokens per pass: {} is one batch a pass (before; CPU still), CUDA's 2^19
            def run():
                saved, tr.EVAL_TOKENS = tr.EVAL_TOKENS, tokens
                try:
                    return fn()
                finally:
                    tr.EVAL_TOKENS = saved
            return run

        stacked = {self.device.split(":")[0]: 1 << 19}
        est = lambda: tr.estimate_loss(model, data, cfg, 0, self.device, self.ctx)  # noqa: E731
        full = lambda: tr.full_val_loss(model, data, cfg.model.block_size, self.device, ctx=self.ctx)  # noqa: E731
        fns = {"estimate_per_batch": passes(est, {}), "estimate_stacked": passes(est, stacked),
               "full_per_batch": passes(full, {}), "full_stacked": passes(full, stacked)}
        values = {k: fn() for k, fn in fns.items()}  # warm-up, and the numbers themselves
        times = interleaved(fns, self.args.eval_rounds, 1, self.device)
        s = {k: statistics.median(v) / 1000 for k, v in times.items()}
        evals = cfg.max_iters // cfg.eval_interval + 1
        return {"seconds": {k: round(v, 3) for k, v in s.items()},
                "stacked_over_per_batch": {k: round(s[k + "_stacked"] / s[k + "_per_batch"], 3)
                                           for k in ("estimate", "full")},
                "per_run_s": {v: round(evals * s["estimate_" + v] + 2 * s["full_" + v], 1)
                              for v in ("per_batch", "stacked")},
                "val_estimate": {k: values[k]["val"] for k in ("estimate_per_batch", "estimate_stacked")},
                "full": {k: values[k] for k in ("full_per_batch", "full_stacked")}}

    def variants(self):
        """Eager and with the graph, not compiled: ten variants would recompile ten times (dynamo's cache holds 8)."""
        out = {}
        for name in ("eager", "graphs"):
            os.environ["TINYGPT_STEP"] = name
            rows = B.bench(self.args.preset, "all", iters=self.args.variant_iters, warmup=4,
                           rounds=self.args.variant_rounds, progress=False, cpu_memory=False)
            out[name] = {r["variant"]: {"ms": round(r["ms_per_iter"], 3), "ratio": round(r["ratio"], 3),
                                        "peak_mb": r["peak_mem_mb"] and round(r["peak_mem_mb"]),
                                        "mem_ratio": r["mem_ratio"] and round(r["mem_ratio"], 3)} for r in rows}
        return out

    def nanogpt(self):
        import bench_nanogpt as N
        cfg, data = self.cfg, load_dataset(self.cfg.dataset)
        log_interval = 10 if self.cuda else 1  # config/train_shakespeare_char.py; the CPU command logs every step
        gen = torch.Generator().manual_seed(0)
        batches = lambda: data.get_batch("train", cfg.batch_size, cfg.model.block_size, gen, self.device)  # noqa: E731
        fns = {"nanoGPT eager": N.nanogpt_step_fn(cfg, str(data.path), self.device, False, log_interval)}
        if self.cuda:  # nanoGPT's default is compile=True
            fns["nanoGPT compiled"] = N.nanogpt_step_fn(cfg, str(data.path), self.device, True, log_interval)
        fns[f"tinygpt {self.best}"] = B._step_fn(cfg, self.device, self.ctx, self.path(self.best), self.capture,
                                                 batches=batches)
        for fn in fns.values():
            for _ in range(5):
                fn()
        times = interleaved(fns, self.args.rounds, self.args.iters, self.device)
        ms = {k: statistics.median(v) for k, v in times.items()}
        ours = ms[f"tinygpt {self.best}"]
        return {"ms": {k: round(v, 3) for k, v in ms.items()},
                "tokens_per_s": {k: round(self.tokens / v * 1000) for k, v in ms.items()},
                "ours_over_nanogpt_tokens_per_s": {k: round(v / ours, 3) for k, v in ms.items()
                                                   if k.startswith("nano")},
                "target": TARGETS["nanogpt_ratio"]}

    def processes(self):
        rows, one = [], None
        for n in self.args.processes:
            rates = B.tokens_per_s_in_processes(n, self.args.preset, self.args.process_seconds, self.best)
            one = one or sum(rates) / n
            rows.append({"n": n, "tokens_per_s": round(sum(rates)), "per_run": round(sum(rates) / n),
                         "x_one": round(sum(rates) / one, 3)})
            print(f"{n} at once: {sum(rates):,.0f} tokens/s", flush=True)
        return {"step": self.best, "rows": rows}


def flex_dropout_check(device):
    """attend_flex_window with dropout (two compiled FlexAttention passes) against the dense formula with the
    same mask: y and the gradients of q, k, v and σ, float32 (the test suite checks it in float64 on CPU)."""
    from tinygpt import variants as V
    from tinygpt.attention import attend_flex_window
    B_, H, T, D, p = 4, 6, 256, 64, 0.2
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v, w = (torch.randn(B_, H, T, D, generator=g, device=device) for _ in range(4))
    span = 1.5 + 300 * torch.rand(B_, H, T, generator=g, device=device)
    torch.manual_seed(5)
    keep = torch.empty(B_, H, T, T, dtype=torch.bool, device=device).bernoulli_(1 - p)

    def dense(q, k, v, span):
        logits = q @ k.transpose(-2, -1) / math.sqrt(D) + V.ramp_offset(span, V.distances(T, device))
        logits = logits.masked_fill(torch.ones(T, T, dtype=torch.bool, device=device).triu(1), float("-inf"))
        return (logits.softmax(-1) * keep / (1 - p)) @ v

    def y_and_grads(fn):
        torch.manual_seed(5)  # the flex path draws its mask from here: `keep` above
        leaves = [t.clone().requires_grad_() for t in (q, k, v, span)]
        y = fn(*leaves)
        return [y.detach(), *torch.autograd.grad((y * w).sum(), leaves)]

    flex, ref = y_and_grads(lambda *a: attend_flex_window(*a, dropout_p=p)), y_and_grads(dense)
    return {name: {"max_abs_diff": (a - b).abs().max().item(), "scale": b.abs().max().item()}
            for name, a, b in zip(("y", "q", "k", "v", "span"), flex, ref)}


def markdown(r):
    m = r["meta"]
    gpu = m["preset"] == "gpu"  # the targets are the gpu preset's, on a lent H200
    lines = [f"# Speed at the {m['preset']} preset on {m['device']}",
             f"torch {m['torch']} (CUDA {m['cuda']}), Python {m['python']}, {m['threads']} threads, started "
             f"{m['started']}{' (graphs replaced by their eager body: a CPU check)' if m['fake_graphs'] else ''}."]

    def failed(name):
        sec = r.get(name)
        if sec is None:
            return True
        if "error" in sec or "skipped" in sec:
            lines.extend(["", f"**{name}**: {sec.get('error') or sec.get('skipped')}"])
            return True
        return False

    if not failed("paths"):
        lines += ["", "## The baseline's step per path (one process, interleaved rounds)", "",
                  "| path | ms/step | × eager | warm-up s (compile, capture) | a run's steps, s |",
                  "|---|---:|---:|---:|---:|"]
        for k, v in r["paths"]["rows"].items():
            lines.append(f"| {k} | {v['ms']:.2f} | {v['x_eager']:.2f} | {v['warm_s']} | {v['run_steps_s']} |")
        lines += [f"| {k} | failed: {e} | | | |" for k, e in r["paths"]["failed"].items()]
    if not failed("run"):
        x = r["run"]
        target = f" (target ≤ {x['target_s']} s)" if gpu else ""
        lines += ["", f"## One whole run ({x['iters']} iterations, {x['step_path']})", "",
                  f"{x['wall_s']} s wall clock{target}: {x['train_s']} s of steps, "
                  f"{x['other_s']} s of evaluation, checkpoints and start-up ({x['other_share']:.0%}); best val loss "
                  f"{x['best_val_loss']:.4f}, whole split {x['val_loss_full']:.4f}."]
    if not failed("eval"):
        e = r["eval"]
        lines += ["", "## Evaluation: one pass per batch against stacked passes", "",
                  "| | per batch, s | stacked, s | ratio |", "|---|---:|---:|---:|"]
        for k in ("estimate", "full"):
            lines.append(f"| {k} | {e['seconds'][k + '_per_batch']} | {e['seconds'][k + '_stacked']} | "
                         f"{e['stacked_over_per_batch'][k]} |")
        lines.append(f"| a run's evaluations | {e['per_run_s']['per_batch']} | {e['per_run_s']['stacked']} | |")
    if not failed("variants"):
        paths = [k for k, v in r["variants"].items() if isinstance(v, dict)]
        lines += ["", "## Variants: step and peak memory against the baseline's", ""]
        if m["device"] == "cpu":
            lines += ["On CPU there is no CUDA graph: the graphs columns time the eager step again.", ""]
        head = " | ".join(f"{p} ms | × baseline" for p in paths)
        lines += [f"| variant | {head} | peak MB | × baseline | target |",
                  "|---|" + "---:|---:|" * len(paths) + "---:|---:|---|"]
        for v in VARIANTS:
            cells = [f"{r['variants'][p][v]['ms']:.2f} | {r['variants'][p][v]['ratio']:.2f}" for p in paths]
            first = r["variants"][paths[0]][v]
            target = "—" if v == "baseline" or not gpu else f"≤ {TARGETS['rank_one' if v in RANK_ONE else 'other']:.2f}"
            peak = "n/a | n/a" if first["peak_mb"] is None else f"{first['peak_mb']} | {first['mem_ratio']:.2f}"
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {peak} | {target} |")
    if not failed("nanogpt"):
        n = r["nanogpt"]
        lines += ["", "## nanoGPT's train.py step (its data loading included) against ours", "",
                  "| step | ms | tokens/s |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.2f} | {n['tokens_per_s'][k]:,} |" for k, v in n["ms"].items()]
        lines.append("\nours ÷ nanoGPT in tokens/s: " + ", ".join(
            f"{k} {v:.2f}" for k, v in n["ours_over_nanogpt_tokens_per_s"].items())
            + (f" (target ≥ {n['target']})" if gpu else ""))
    if not failed("processes"):
        p = r["processes"]
        lines += ["", f"## Processes sharing the device ({p['step']})", "",
                  "| processes | tokens/s | per run | × one |", "|---:|---:|---:|---:|"]
        lines += [f"| {x['n']} | {x['tokens_per_s']:,} | {x['per_run']:,} | {x['x_one']:.2f} |" for x in p["rows"]]
    if not failed("checks"):
        c = r["checks"]
        lines += ["", "## Checks", "", "Losses of 19 steps on each path against the first (dropout 0): max |Δ| "
                  + ", ".join(f"{k} {v:.2e}" for k, v in c["max_abs_diff"].items()) + "."]
        if "flex_dropout" in c:
            lines.append("Hard window, two-pass FlexAttention dropout against the dense formula (same mask): "
                         + ", ".join(f"{k} {v['max_abs_diff']:.1e} of {v['scale']:.1e}" for k, v in
                                     c["flex_dropout"].items()) + ".")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpu")
    p.add_argument("--out", required=True)
    p.add_argument("--deadline", type=float, default=210, help="seconds; later sections are skipped (default 210)")
    p.add_argument("--paths", default=None,
                   help="comma-separated step paths (default: all on CUDA, eager,graphs on CPU)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20, help="steps per timed round")
    p.add_argument("--variant-rounds", type=int, default=3)
    p.add_argument("--variant-iters", type=int, default=10)
    p.add_argument("--eval-rounds", type=int, default=3)
    p.add_argument("--run-iters", type=int, default=None, help="the whole run's max_iters (default: the preset's)")
    p.add_argument("--processes", default="1,2,4")
    p.add_argument("--process-seconds", type=float, default=4.0)
    p.add_argument("--fake-graphs", action="store_true", help="CPU tests: the graph's body runs instead of a capture")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated, to rerun some (default: all; without paths the fastest path is eager)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    cuda = resolve_device(make_config(args.preset).device).startswith("cuda")
    args.paths = (args.paths or (",".join(PATHS) if cuda else "eager,graphs")).split(",")
    args.processes = [int(n) for n in args.processes.split(",")]
    args.sections = args.sections.split(",")
    s = Speed(args)
    # by what the issue needs most; seconds each needs on an H200 (a section started in time may overrun)
    for name, needs_s in SECTIONS.items():
        if name in args.sections:
            s.section(name, getattr(s, name), needs_s)
    print(open(os.path.join(args.out, "speed.md")).read())
    return s.result


if __name__ == "__main__":
    main()
