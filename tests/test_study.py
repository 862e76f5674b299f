"""tinygpt.book.study and the run store: which runs a chapter needs, and which of them need a model."""

from tinygpt.book import study
from tinygpt.book.experiments import ensure_runs


def test_only_seed_0_needs_a_model():
    runs = study.runs("smoke", ["baseline", "structure_mlp_prenorm"], 3)
    assert [r.need_model for r in runs] == [True, False, False] * 2
    assert all(not r.need_model for r in study.budget_runs("smoke", ["baseline"], {2: 2}))


def test_regime_runs_keep_the_tokens_per_iteration():
    ctx = study.context_runs("cpu", ["baseline"], 1)[0].config()
    assert (ctx.model.block_size, ctx.batch_size) == (256, 3)  # 12 × 64 = 3 × 256 tokens per iteration
    long = study.budget_runs("cpu", ["soft_window"], {4: 1})[0].config()
    assert long.max_iters == long.lr_decay_iters == 8000


def test_losses_alone_suffice_where_no_model_is_read(data_dir, tmp_path, one_thread):
    """A finished seed-1 run without its checkpoint is not retrained; seed 0 (whose model is read) is."""
    runs = study.runs("smoke", ["baseline"], 2)
    ensure_runs(runs, root=tmp_path, progress=False)
    for r in runs:
        (r.path(tmp_path) / "best.pt").unlink()
    stamps = {r.seed: (r.path(tmp_path) / "metrics.json").stat().st_mtime_ns for r in runs}
    ensure_runs(runs, root=tmp_path, need_model=True, progress=False)
    assert (runs[0].path(tmp_path) / "best.pt").exists()
    assert (runs[1].path(tmp_path) / "metrics.json").stat().st_mtime_ns == stamps[1]
    assert not (runs[1].path(tmp_path) / "best.pt").exists()
