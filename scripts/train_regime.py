"""Train chapter 06's regime runs (budgets ×2/×4/×8 and context 256) in the background, resumably.

    python scripts/train_regime.py --jobs 2            # every missing run, most informative first
    python scripts/train_regime.py --dry-run           # the queue, and what is already finished

Each run lands in results/<preset>/<tag>/seed<k>/ through the run store: finished runs are skipped,
interrupted ones resume from their checkpoint, so the script can be stopped and started at will.
The chapter itself loads the finished runs' JSON files (no checkpoints needed).
"""

import argparse
import os
import time
from concurrent.futures import as_completed

from tinygpt.book import study
from tinygpt.book.executors import pinned_pool, submit_interruptible
from tinygpt.book.experiments import Job, is_finished, train_job
from tinygpt.checkpoint import read_json


def queue(preset, with_key_importance=False, refresh_1x=False):
    """(run, retrain) pairs, the issue's minimum first: ×2, ×4, context, ×8, a third context seed; then the refresh."""
    v = study.REGIME_VARIANTS
    q = [(r, False) for r in study.budget_runs(preset, v, {2: 3, 4: 3})]
    q += [(r, False) for r in study.context_runs(preset, v, 2)]
    q += [(r, False) for r in study.budget_runs(preset, v, {8: 2})]
    q += [(r, False) for r in study.context_runs(preset, v, 3)[2::3]]
    if refresh_1x:  # the 1× runs again, to add the final checkpoint's whole-split loss to their metrics
        q += [(r, True) for r in study.runs(preset, ["baseline"], 5) + study.runs(preset, v[1:], 3)
              if "final_val_loss_full" not in read_json(r.path() / "metrics.json")]
    if with_key_importance:
        q += [(r, False) for r in study.budget_runs(preset, ["key_importance"], {2: 3, 4: 3, 8: 2})]
    return q


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once, one thread each (default 2)")
    ap.add_argument("--key-importance", action="store_true", help="also key_importance at every budget")
    ap.add_argument("--refresh-1x", action="store_true",
                    help="retrain the 1× runs that lack the final-checkpoint metric")
    ap.add_argument("--dry-run", action="store_true", help="list the queue and stop")
    a = ap.parse_args()
    q = queue(a.preset, a.key_importance, a.refresh_1x)
    todo = [(r, rt) for r, rt in q if rt or not is_finished(r.path(), r.config())]
    print(f"{len(todo)} of {len(q)} runs to train", flush=True)
    if a.dry_run:
        for r, rt in todo:
            print(f"  {r.name} seed{r.seed}{' (retrain)' if rt else ''}")
        return
    t0 = time.time()
    with pinned_pool(a.jobs) as pool:  # each run with the book's thread count; Ctrl-C stops the workers cleanly
        futs = {submit_interruptible(pool, train_job, Job(r, rt, device="cpu")): r for r, rt in todo}
        for i, fut in enumerate(as_completed(futs), 1):
            r = futs[fut]
            try:
                m = read_json(os.path.join(fut.result(), "metrics.json"))
                msg = f"val_loss_full {m['val_loss_full']:.4f} final {m['final_val_loss_full']:.4f}"
            except Exception as e:  # report and go on: one failed run must not stop the others
                msg = f"FAILED: {type(e).__name__}: {e}"
            print(f"[{i}/{len(todo)} {(time.time() - t0) / 60:.1f} min] {r.name} seed{r.seed}: {msg}", flush=True)


if __name__ == "__main__":
    main()
