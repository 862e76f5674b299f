"""Command line: `tinygpt prepare | train | sample | bench | book` (also `python -m tinygpt`)."""

import argparse
import math
import os
import shlex
import sys
from contextlib import ExitStack
from pathlib import Path

from . import presets
from .variants import VARIANTS


def _keys_help():
    model = ", ".join(presets._MODEL_FIELDS)
    train = ", ".join(presets._TRAIN_FIELDS)
    return f"model keys: {model}. training keys: {train}."


def cmd_prepare(args):
    from .data import prepare
    for name in args.dataset:
        path = prepare(name, source=args.source, force=args.force)
        print(f"prepared {name} in {path}")


RUN_FILES = ("ckpt.pt", "best.pt", "history.json", "metrics.json", "config.json")  # what train() writes


def _train_command(args, out, *flags):
    sets = [a for kv in args.set or () for a in ("--set", kv)]
    return shlex.join(["tinygpt", "train", "--preset", args.preset, *sets, "--out", str(out), *flags])


def _resume_hint(args, out):
    """Where the last checkpoint is and the command that continues from it (or starts again)."""
    if not (out / "ckpt.pt").is_file():
        return f"no checkpoint was written; start again with: {_train_command(args, out, '--overwrite')}"
    try:
        from .files import read_json
        at = f" (iter {read_json(out / 'history.json')['evals'][-1]['iter']})"
    except (OSError, ValueError, KeyError, IndexError):
        at = ""
    return f"the last checkpoint is {out / 'ckpt.pt'}{at}; continue with: {_train_command(args, out, '--resume')}"


def cmd_train(args):
    from .checkpoint import folder_lock
    from .device import resolve_device
    from .files import WriteFailed
    from .signals import exit_code, terminated
    from .train import train
    cfg = presets.make_config(args.preset, **presets.parse_overrides(args.set))
    resolve_device(cfg.device)  # a bad device fails before anything is written
    out = Path(args.out or f"out/{args.preset}-{cfg.model.variant}")
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run or replace it")
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 guards the folder for all ranks
        train(cfg, out, resume=args.resume, progress=False)
        return 0
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: choose a folder path")
    with ExitStack() as stack:  # a lock per run folder: a second `train --out` into it fails at once
        try:
            stack.enter_context(folder_lock(out))
        except OSError as e:
            raise ValueError(f"cannot write to --out {out} ({e.strerror or e}): choose a folder you can write to") \
                from None
        used = sorted(p.name for p in out.iterdir() if p.name != ".lock")
        if args.resume and not (out / "ckpt.pt").is_file():
            raise ValueError(f"--resume: {out} holds no checkpoint (ckpt.pt) to continue from; "
                             "drop --resume to start a new run")
        if used and not args.resume:
            if not args.overwrite:
                raise ValueError(f"--out {out} is not empty ({', '.join(used[:5])}): add --resume to continue "
                                 "its run, --overwrite to replace it, or choose another folder")
            for name in RUN_FILES:  # only the run's own files; anything else in the folder stays
                (out / name).unlink(missing_ok=True)
        try:
            train(cfg, out, resume=args.resume, progress=not args.no_progress)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the files are whole; say how to go on
            how = "terminated" if terminated(e) else "interrupted"
            print(("\n" if not args.no_progress else "") + f"tinygpt train: {how}; {_resume_hint(args, out)}",
                  file=sys.stderr)
            return exit_code(e)
        except WriteFailed as e:  # disk full, read-only: the last good checkpoint is intact
            print(f"tinygpt train: error: {e}; then {_resume_hint(args, out)}", file=sys.stderr)
            return 2


def cmd_sample(args):
    from .sample import sample
    for name, value in (("--num-samples", args.num_samples), ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1 (got {value})")
    if args.top_k < 0:
        raise ValueError(f"--top-k must be ≥ 0 (got {args.top_k}); 0 samples among all characters")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise ValueError(f"--temperature must be a positive number (got {args.temperature}); "
                         "below 1 is sharper, above 1 more random")
    prompt = args.prompt.encode("latin-1", "backslashreplace").decode("unicode_escape")  # \n escapes; keeps é, €
    started = []

    def show(chars):  # the first sample appears as it is generated; the others (drawn alongside) follow it
        if not started:
            started.append(sys.stdout.write(prompt))
        sys.stdout.write(chars[0])
        sys.stdout.flush()

    texts = sample(args.ckpt, prompt=prompt, num_samples=args.num_samples,
                   max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                   seed=args.seed, device=args.device, trusted=args.trusted, stream=show)
    print()
    print("---------------")
    for text in texts[1:]:
        print(text)
        print("---------------")


def cmd_bench(args):
    from .bench import bench, bench_processes, format_rows
    for name, value, least in (("--iters", args.iters, 1), ("--rounds", args.rounds, 1), ("--warmup", args.warmup, 0)):
        if value < least:
            raise ValueError(f"{name} must be ≥ {least} (got {value})")
    if args.processes < 1:
        raise ValueError(f"--processes must be ≥ 1 (got {args.processes})")
    overrides = presets.parse_overrides(args.set)  # checked here, before any process starts
    if args.processes == 1:
        rows = bench(args.preset, "all" if "all" in args.variant else args.variant, iters=args.iters,
                     warmup=args.warmup, rounds=args.rounds, **overrides)
    else:
        argv = ["--preset", args.preset, "--variant", *args.variant, "--iters", str(args.iters), "--warmup",
                str(args.warmup), "--rounds", str(args.rounds)] + [x for kv in args.set or [] for x in ("--set", kv)]
        rows = bench_processes(argv, args.processes)
    print(f"preset {args.preset}, device {rows[0]['device']}, {rows[0]['threads']} threads, "
          f"median of {args.rounds} rounds × {args.iters} steps" + (f" in each of {args.processes} processes"
                                                                      if args.processes > 1 else "")
          + "; ratios to the baseline timed around each variant")
    print(format_rows(rows))
    if args.json:
        from .checkpoint import write_json
        write_json(args.json, {"preset": args.preset, "iters": args.iters, "rounds": args.rounds,
                               "processes": args.processes, "rows": rows})


def cmd_book(args):
    from .book.cli import main
    return main(args)


def build_parser():
    p = argparse.ArgumentParser(prog="tinygpt", description="A tiny character-level GPT and its attention variants.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", help="encode the raw text into data/<dataset>/{train,val}.bin",
                       description="Find the raw text (an explicit --source, else $TINYGPT_DATA_SOURCE, else a "
                                   "download), verify its checksum, and write train.bin/val.bin/meta.json.")
    s.add_argument("dataset", nargs="*", default=["shakespeare_char"],
                   help="shakespeare_char (default) and/or shakespeare_complete")
    s.add_argument("--source", help="a raw text file or a folder laid out like shared/data")
    s.add_argument("--force", action="store_true", help="re-encode even if prepared files verify")
    s.set_defaults(fn=cmd_prepare)

    s = sub.add_parser("train", help="train a model at a preset", description="Train with nanoGPT's recipe. "
                       + _keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--preset", default="cpu", choices=list(presets.PRESETS), help="smoke, cpu or gpu (default cpu)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set variant=soft_window --set n_layer=8 (repeatable)")
    s.add_argument("--out", help="run folder (default out/<preset>-<variant>)")
    s.add_argument("--resume", action="store_true", help="continue from the run folder's ckpt.pt")
    s.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out folder (without it, such a folder is refused)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--ckpt", required=True, help="a tinygpt run's ckpt.pt/best.pt or a nanoGPT ckpt.pt")
    s.add_argument("--prompt", default="\\n", help="start of the text; escapes such as \\n work (default a newline)")
    s.add_argument("--num-samples", type=int, default=3, help="how many samples (default 3)")
    s.add_argument("--max-new-tokens", type=int, default=500, help="characters to generate per sample (default 500)")
    s.add_argument("--temperature", type=float, default=0.8, help="<1 sharper, >1 more random (default 0.8)")
    s.add_argument("--top-k", type=int, default=200, help="sample among the k likeliest characters; 0 = all")
    s.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    s.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    s.add_argument("--trusted", action="store_true", help="allow a checkpoint holding arbitrary Python objects")
    s.set_defaults(fn=cmd_sample)

    s = sub.add_parser("bench", help="ms per training step, tokens/s and memory, variants side by side")
    s.add_argument("--preset", default="cpu", choices=list(presets.PRESETS))
    s.add_argument("--variant", nargs="+", default=["baseline"], choices=list(VARIANTS) + ["all"],
                   help="variants to time against the baseline, or all (default baseline)")
    s.add_argument("--iters", type=int, default=20, help="steps per timing round (default 20)")
    s.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    s.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported (default 5)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    s.add_argument("--processes", type=int, default=1,
                   help="run the bench in this many fresh processes and pool their rounds (default 1)")
    s.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")
    s.set_defaults(fn=cmd_bench)

    try:
        from .book.cli import add_parser
        add_parser(sub, cmd_book)
    except ImportError:  # the book's tool chain (papermill…) is an optional extra
        pass
    return p


def main(argv=None):
    from .signals import sigterm_raises
    args = build_parser().parse_args(argv)
    from .environ import absolute_path_env
    old = absolute_path_env()  # a relative TINYGPT_DATA_SOURCE means "from here", also for kernels and workers
    try:
        with sigterm_raises():  # a scheduler's SIGTERM ends a command as Ctrl-C does (exit 143)
            return _run(args)
    finally:  # main() called in-process (tests) leaves the environment as it found it
        os.environ.update(old)


def _run(args):
    from .environ import check
    from .signals import exit_code, terminated
    try:
        check()  # every TINYGPT_* variable, before anything starts: a kernel or a worker would fail far from here
        return args.fn(args) or 0
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: one line, the shell's code for the signal, no traceback
        print(f"\ntinygpt {args.command}: {'terminated' if terminated(e) else 'interrupted'}",
              file=sys.stderr)
        return exit_code(e)
    except (ValueError, KeyError, TypeError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"tinygpt {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a diverged run says why in one line; other runtime errors keep their traceback
        from .train import TrainingDiverged
        if not isinstance(e, TrainingDiverged):
            raise
        print(f"tinygpt {args.command}: error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
