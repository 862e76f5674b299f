"""tinygpt.train and tinygpt.presets: files, determinism, exact resume, divergence, atomic saves, presets, DDP."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinygpt import checkpoint
from tinygpt.checkpoint import load, read_checkpoint
from tinygpt.data import Dataset
from tinygpt.model import GPT
from tinygpt.presets import PRESETS, TrainConfig, make_config, parse_overrides
from tinygpt.train import TrainingDiverged, get_lr, load_history, train

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or ROOT.parent / "shared" / "data").resolve()  # CI: relative
EVAL_KEYS = {"iter", "train_loss", "val_loss", "lr", "elapsed_s", "tokens_per_s"}
RUN_FILES = ("config.json", "history.json", "ckpt.pt", "best.pt", "metrics.json")
SMALL = dict(max_iters=10, eval_interval=4)  # evals at 0, 4, 8 and 10 (max_iters is always evaluated)


def small(**overrides):
    return make_config("smoke", **{**SMALL, **overrides})


def exact(history):
    """The parts of a history that must repeat bit for bit (times and speeds never do)."""
    return [(h["iter"], h["train_loss"], h["val_loss"], h["lr"]) for h in history["evals"]]


def weights(path):
    return read_checkpoint(path)["model"]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture(scope="module", autouse=True)
def _prepared(data_dir):
    return data_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """One short smoke run: (config, folder, returned history)."""
    cfg = make_config("smoke", max_iters=14, eval_interval=4)  # evals at 0, 4, 8, 12, 14
    out = tmp_path_factory.mktemp("run")
    return cfg, out, train(cfg, out, progress=False, log=lambda *a: None)


# ---- a run's files ----

def test_smoke_run_lowers_val_loss_and_writes_its_files(run):
    cfg, out, hist = run
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert no_temp_files(out)
    evals = hist["evals"]
    assert [h["iter"] for h in evals] == [0, 4, 8, 12, 14]
    assert all(set(h) == EVAL_KEYS for h in evals)
    assert evals[0]["tokens_per_s"] is None and all(h["tokens_per_s"] > 0 for h in evals[1:])
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in evals)
    best = min(h["val_loss"] for h in evals)
    assert best < evals[0]["val_loss"] - 0.2  # a 65-way guess is ln 65 = 4.17; a few steps learn the unigram stats
    assert evals[0]["val_loss"] == pytest.approx(math.log(65), abs=0.3)

    on_disk = load_history(out)
    assert on_disk["evals"] == evals
    assert on_disk["best_val_loss"] == best == hist["best_val_loss"]
    assert on_disk["config"] == hist["config"] == json.loads((out / "config.json").read_text())
    assert TrainConfig.from_dict(on_disk["config"]).model.vocab_size == 65  # the data set's, not the preset's

    metrics = json.loads((out / "metrics.json").read_text())
    best_iter = next(h["iter"] for h in evals if h["val_loss"] == best)
    assert metrics["best_val_loss"] == best and metrics["best_iter"] == best_iter
    assert metrics["final_val_loss"] == evals[-1]["val_loss"] and metrics["iters"] == 14
    assert metrics["world_size"] == 1 and metrics["device"] == "cpu" and metrics["params"] > 0

    ckpt, best_ckpt = read_checkpoint(out / "ckpt.pt"), read_checkpoint(out / "best.pt")
    assert ckpt["iter_num"] == 14 and ckpt["history"] == evals and "optimizer" in ckpt
    assert best_ckpt["iter_num"] == best_iter and best_ckpt["best_val_loss"] == best
    assert "optimizer" not in best_ckpt  # best.pt is weights only: small, for sampling
    assert len(best_ckpt["vocab"]) == 65
    model = load(out / "best.pt")
    assert isinstance(model, GPT) and not model.training
    for name in RUN_FILES:  # readable by others, like the prepared data (mkstemp alone makes 0600 files)
        assert (out / name).stat().st_mode & 0o444 == 0o444, name


@pytest.mark.parametrize("best_is_final", [True, False])
def test_whole_split_losses_are_those_of_the_best_and_final_weights(tmp_path, monkeypatch, best_is_final):
    """metrics.json's val_loss_full is best.pt's whole-split loss, final_val_loss_full ckpt.pt's; when the best
    checkpoint is the final model the pass runs once (the same weights give the same number)."""
    import tinygpt.train as tr
    from tinygpt.data import load_dataset
    real_estimate, passes = tr.estimate_loss, []

    def estimate(model, data, cfg, iter_num, device, ctx):  # the periodic estimate picks iter 4 unless best_is_final
        out = real_estimate(model, data, cfg, iter_num, device, ctx)
        return {**out, "val": out["val"] if best_is_final or iter_num != 4 else 0.0}

    def counted(*args, **kwargs):
        passes.append(1)
        return real_full(*args, **kwargs)

    real_full = tr.full_val_loss
    monkeypatch.setattr(tr, "estimate_loss", estimate)
    monkeypatch.setattr(tr, "full_val_loss", counted)
    train(small(), tmp_path, progress=False, log=lambda *a: None)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert read_checkpoint(tmp_path / "best.pt")["iter_num"] == (10 if best_is_final else 4)
    assert len(passes) == (1 if best_is_final else 2)
    data = load_dataset("shakespeare_char")
    assert metrics["val_loss_full"] == real_full(load(tmp_path / "best.pt"), data, 32)
    assert metrics["final_val_loss_full"] == real_full(load(tmp_path / "ckpt.pt"), data, 32)
    assert (metrics["val_loss_full"] == metrics["final_val_loss_full"]) == best_is_final


def test_eval_iters_are_multiples_of_eval_interval_then_max_iters(tmp_path):
    hist = train(make_config("smoke", max_iters=6, eval_interval=3, eval_iters=1), tmp_path, progress=False)
    assert [h["iter"] for h in hist["evals"]] == [0, 3, 6]


# ---- determinism ----

def test_same_seed_same_history_and_weights(run, tmp_path):
    cfg, out, hist = run
    again = train(cfg, tmp_path / "again", progress=False)
    assert exact(again) == exact(hist)  # == on floats: bit for bit
    assert_same_weights(tmp_path / "again" / "best.pt", out / "best.pt")
    assert_same_weights(tmp_path / "again" / "ckpt.pt", out / "ckpt.pt")


def test_other_seed_other_history(tmp_path):
    a = train(small(seed=1, max_iters=4), tmp_path / "a", progress=False)
    b = train(small(seed=2, max_iters=4), tmp_path / "b", progress=False)
    assert [h["val_loss"] for h in a["evals"]] != [h["val_loss"] for h in b["evals"]]
    assert [h["train_loss"] for h in a["evals"]] != [h["train_loss"] for h in b["evals"]]


# ---- resume ----

@pytest.mark.parametrize("overrides, stops", [
    ({}, [[1], [4], [6], [9], [3, 7]]),  # 4: an eval boundary; 6, 9: between evals; [3, 7]: killed twice
    ({"dropout": 0.1}, [[6]]),  # the dropout RNG must come back too
    ({"variant": "structure_gate"}, [[5]]),
    ({"variant": "hard_window", "dropout": 0.1}, [[8], [9]]),  # resumes from the evals at 4 and 8
], ids=["baseline", "dropout", "structure_gate", "hard_window"])
def test_resumed_run_equals_uninterrupted(tmp_path, overrides, stops):
    cfg = small(**overrides)
    whole = train(cfg, tmp_path / "whole", progress=False)
    for chain in stops:
        out = tmp_path / "-".join(map(str, chain))
        for i, k in enumerate(chain):
            part = train(cfg, out, resume=i > 0, progress=False, stop_at=k, log=lambda *a: None)
            assert part["stopped_at"] == k
            assert not (out / "metrics.json").exists()
        logs = []
        resumed = train(cfg, out, resume=True, progress=False, log=logs.append)
        assert logs[0].startswith(f"resumed {out} at iter ")
        assert exact(resumed) == exact(whole), chain
        assert exact(load_history(out)) == exact(whole)
        assert resumed["best_val_loss"] == whole["best_val_loss"]
        assert_same_weights(out / "ckpt.pt", tmp_path / "whole" / "ckpt.pt")
        assert_same_weights(out / "best.pt", tmp_path / "whole" / "best.pt")
        assert json.loads((out / "metrics.json").read_text())["best_iter"] == \
            json.loads((tmp_path / "whole" / "metrics.json").read_text())["best_iter"]


def test_resume_of_a_finished_run_changes_nothing(run, tmp_path):
    cfg, out, hist = run
    before = (out / "ckpt.pt").read_bytes()
    again = train(cfg, out, resume=True, progress=False, log=lambda *a: None)
    assert exact(again) == exact(hist)
    assert (out / "ckpt.pt").read_bytes() == before


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    hist = train(small(max_iters=2, eval_interval=2), tmp_path, resume=True, progress=False)
    assert [h["iter"] for h in hist["evals"]] == [0, 2]


@pytest.mark.parametrize("overrides, key", [
    ({"n_layer": 3}, "n_layer"), ({"learning_rate": 1e-2}, "learning_rate"),
    ({"variant": "soft_window"}, "variant"), ({"max_iters": 20}, "max_iters"),
])
def test_resume_with_other_config_names_the_mismatch(tmp_path, overrides, key):
    train(small(), tmp_path, progress=False, stop_at=1)
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(ValueError, match=rf"another config .*'{key}'") as e:
        train(small(**overrides), tmp_path, resume=True, progress=False)
    changed = {k for k in ("n_layer", "learning_rate", "variant", "max_iters") if f"'{k}'" in str(e.value)}
    assert changed == {key}  # only the field that differs
    assert (tmp_path / "ckpt.pt").read_bytes() == before


# ---- divergence ----

def test_huge_learning_rate_diverges_cleanly(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf).*intact.*Lower learning_rate"):
        train(small(learning_rate=1e6, warmup_iters=0), tmp_path, progress=False)
    assert read_checkpoint(tmp_path / "ckpt.pt")["iter_num"] == 0
    assert not (tmp_path / "metrics.json").exists()
    assert no_temp_files(tmp_path)


@pytest.fixture
def poison(monkeypatch):
    """poison(mode, after): the model's loss becomes NaN in train or eval mode from call `after` on."""
    orig = GPT.forward
    state = {"mode": None, "after": 0, "calls": 0}

    def forward(self, idx, targets=None):
        logits, loss = orig(self, idx, targets)
        if state["mode"] is not None and self.training == (state["mode"] == "train"):
            state["calls"] += 1
            if state["calls"] > state["after"] and loss is not None:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward)
    return lambda mode, after: state.update(mode=mode, after=after)


def test_nan_training_loss_keeps_last_good_checkpoint(tmp_path, poison):
    cfg = small()
    train(cfg, tmp_path / "ref", progress=False, stop_at=5)  # the checkpoint of iter 4, for comparison
    poison("train", 6)  # one training forward per iteration: iters 0-5 are fine, 6 is NaN
    diverged = r"training loss became nan at iter 6; the last good checkpoint .* intact"
    with pytest.raises(TrainingDiverged, match=diverged):
        train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "run"
    ckpt = read_checkpoint(out / "ckpt.pt")
    assert ckpt["iter_num"] == 4 and [h["iter"] for h in ckpt["history"]] == [0, 4]
    assert_same_weights(out / "ckpt.pt", tmp_path / "ref" / "ckpt.pt")
    assert [h["iter"] for h in load_history(out)["evals"]] == [0, 4]
    assert not (out / "metrics.json").exists()
    assert no_temp_files(out)


def test_nan_eval_loss_keeps_last_good_checkpoint(tmp_path, poison):
    cfg = small()
    poison("eval", 2 * 2 * cfg.eval_iters)  # evals at 0 and 4 are fine (train + val splits), the one at 8 is NaN
    with pytest.raises(TrainingDiverged, match=r"eval loss .* at iter 8 is not finite.*intact"):
        train(cfg, tmp_path, progress=False)
    assert read_checkpoint(tmp_path / "ckpt.pt")["iter_num"] == 4
    assert [h["iter"] for h in load_history(tmp_path)["evals"]] == [0, 4]
    assert no_temp_files(tmp_path)


# ---- atomic writes ----

def test_crash_while_saving_leaves_previous_checkpoint(tmp_path, monkeypatch):
    cfg = small()
    train(cfg, tmp_path, progress=False, stop_at=5)
    before = {n: (tmp_path / n).read_bytes() for n in ("ckpt.pt", "history.json")}
    real_write = checkpoint.atomic_write

    def half_then_full(path, data):  # best.pt saves normally; ckpt.pt dies half written, the disk full
        if Path(path).name != "ckpt.pt":
            return real_write(path, data)

        def write(f):
            f.write(bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", half_then_full)
    with pytest.raises(OSError, match=r"cannot write .*ckpt.pt \(No space left on device\): free some disk space; "
                                      r"the previous ckpt.pt is intact"):
        train(cfg, tmp_path, resume=True, progress=False, log=lambda *a: None)
    monkeypatch.undo()
    assert (tmp_path / "ckpt.pt").read_bytes() == before["ckpt.pt"]
    assert (tmp_path / "history.json").read_bytes() == before["history.json"]  # written after ckpt.pt: untouched
    assert read_checkpoint(tmp_path / "ckpt.pt")["iter_num"] == 4
    assert no_temp_files(tmp_path)
    # and the run still resumes to the uninterrupted result
    resumed = train(cfg, tmp_path, resume=True, progress=False, log=lambda *a: None)
    assert exact(resumed) == exact(train(cfg, tmp_path / "whole", progress=False))


# ---- threads: part of the run ----

def test_the_thread_count_is_recorded_and_the_callers_comes_back(tmp_path):
    n = torch.get_num_threads()
    seen = []
    real = GPT.forward

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GPT, "forward", spy)
        train(small(threads=1, max_iters=2, eval_interval=2), tmp_path / "one", progress=False)
    assert set(seen) == {1} and torch.get_num_threads() == n
    assert json.loads((tmp_path / "one" / "config.json").read_text())["threads"] == 1
    train(small(max_iters=2, eval_interval=2), tmp_path / "auto", progress=False)  # 0: this process's count
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["threads"] == n
    with pytest.raises(ValueError, match=r"another config \(\{'threads': \(1, 2\)\}\)"):
        train(small(threads=2, max_iters=2, eval_interval=2), tmp_path / "one", resume=True, progress=False)


def test_a_checkpoint_without_a_thread_count_resumes(tmp_path):
    """Checkpoints from before the field: a missing count is not a different config."""
    cfg = small(threads=1)
    train(cfg, tmp_path, progress=False, stop_at=5)
    ckpt = read_checkpoint(tmp_path / "ckpt.pt")
    del ckpt["config"]["threads"]
    checkpoint.save_checkpoint(tmp_path / "ckpt.pt", ckpt)
    logs = []
    resumed = train(cfg, tmp_path, resume=True, progress=False, log=logs.append)
    assert exact(resumed) == exact(train(cfg, tmp_path / "whole", progress=False))
    assert logs[0] == f"resumed {tmp_path} at iter 4"


# ---- data_fraction ----

def test_data_fraction_reaches_every_train_batch(tmp_path, monkeypatch):
    calls = []
    real = Dataset.get_batch

    def spy(self, split, *args, fraction=1.0, **kwargs):
        calls.append((split, fraction))
        return real(self, split, *args, fraction=fraction, **kwargs)

    monkeypatch.setattr(Dataset, "get_batch", spy)
    train(small(data_fraction=0.25, max_iters=3, eval_interval=3), tmp_path, progress=False)
    train_calls = [f for s, f in calls if s == "train"]
    assert len(train_calls) == 4 + 2 * 2  # 3 steps + the prefetch, and eval_iters batches at iters 0 and 3
    assert set(train_calls) == {0.25}
    assert {f for s, f in calls if s == "val"} == {1.0}  # val is always whole


# ---- presets ----

def test_gpu_preset_is_nanogpt_train_shakespeare_char():
    c = make_config("gpu")
    m = c.model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout, m.bias) == (6, 6, 384, 256, 0.2, False)
    assert (c.batch_size, c.gradient_accumulation_steps) == (64, 1)
    assert (c.learning_rate, c.min_lr, c.max_iters, c.lr_decay_iters, c.warmup_iters) == (1e-3, 1e-4, 5000, 5000, 100)
    assert (c.beta1, c.beta2, c.weight_decay, c.grad_clip, c.decay_lr) == (0.9, 0.99, 0.1, 1.0, True)
    assert (c.eval_interval, c.eval_iters) == (250, 200)
    assert c.model.variant == "baseline" and c.dataset == "shakespeare_char" and c.preset == "gpu"


def test_cpu_preset_is_nanogpt_readme_cpu_command():
    c = make_config("cpu")
    m = c.model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (c.batch_size, c.max_iters, c.lr_decay_iters, c.eval_iters) == (12, 2000, 2000, 20)
    assert (c.learning_rate, c.min_lr, c.warmup_iters, c.beta2, c.compile) == (1e-3, 1e-4, 100, 0.99, False)


def test_presets_are_not_shared_or_mutated():
    a = make_config("cpu", n_layer=8, dropout=0.1)
    assert (a.model.n_layer, a.model.dropout) == (8, 0.1)
    assert make_config("cpu").model.n_layer == 4 and PRESETS["cpu"]["model"]["n_layer"] == 4
    assert make_config("smoke", dropout=0).model.dropout == 0.0  # an int is fine for a float field
    assert isinstance(make_config("smoke", learning_rate=1).learning_rate, float)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(KeyError, match=r"unknown config key 'nosuch'; valid keys: .*n_layer.*") as e:
        make_config("cpu", nosuch=1)
    assert "learning_rate" in str(e.value) and "variant" in str(e.value)


@pytest.mark.parametrize("overrides", [
    {"n_layer": "8"}, {"n_layer": 8.5}, {"n_layer": True}, {"dropout": "x"}, {"learning_rate": "1e-3"},
    {"compile": 1}, {"decay_lr": 0}, {"bias": "true"}, {"variant": 3}, {"dropout": None},
])
def test_wrong_types_raise_type_error(overrides):
    (key,) = overrides
    with pytest.raises(TypeError, match=key):
        make_config("cpu", **overrides)


def test_bad_values_raise_value_error():
    for overrides in ({"dropout": 1.0}, {"n_embd": 130}, {"data_fraction": 0.0}, {"max_iters": 0},
                      {"variant": "nosuch"}, {"dtype": "int8"}, {"learning_rate": -1.0}, {"learning_rate": math.inf},
                      {"min_lr": math.nan}, {"min_lr": 0.0}, {"weight_decay": math.inf}, {"beta1": 1.0},
                      {"threads": -1}):
        with pytest.raises(ValueError):
            make_config("cpu", **overrides)


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown preset 'nosuch'; valid: gpu, cpu, smoke"):
        make_config("nosuch")


def test_parse_overrides_types_by_field():
    got = parse_overrides(["n_layer=8", "dropout=0.1", "variant=soft_window", " compile = true", "decay_lr=no",
                           "learning_rate=6e-4", "data_fraction=1"])
    assert got == {"n_layer": 8, "dropout": 0.1, "variant": "soft_window", "compile": True, "decay_lr": False,
                   "learning_rate": 6e-4, "data_fraction": 1.0}
    assert type(got["n_layer"]) is int and type(got["data_fraction"]) is float
    assert parse_overrides(None) == {} and parse_overrides([]) == {}
    assert parse_overrides(["variant=a=b"]) == {"variant": "a=b"}  # split at the first '='
    cfg = make_config("smoke", **got)
    assert (cfg.model.n_layer, cfg.model.variant, cfg.compile) == (8, "soft_window", True)


@pytest.mark.parametrize("pair, exc, pattern", [
    ("n_layer=x", TypeError, "n_layer must be of type int"),
    ("n_layer=8.5", TypeError, "n_layer"),
    ("dropout=x", TypeError, "dropout must be of type float"),
    ("compile=maybe", TypeError, "compile must be true or false"),
    ("nosuchkey=1", KeyError, "unknown config key 'nosuchkey'"),
    ("n_layer", ValueError, "must look like key=value"),
])
def test_parse_overrides_rejects_bad_pairs(pair, exc, pattern):
    with pytest.raises(exc, match=pattern):
        parse_overrides([pair])


def test_config_round_trips_through_dict():
    cfg = make_config("cpu", variant="structure_gate", dropout=0.1)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---- learning-rate schedule ----

def nanogpt_lr(it, learning_rate, warmup_iters, lr_decay_iters, min_lr):
    """nanoGPT train.py's get_lr, verbatim."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_lr_schedule_matches_nanogpt():
    cfg = make_config("gpu")
    args = (cfg.learning_rate, cfg.warmup_iters, cfg.lr_decay_iters, cfg.min_lr)
    for it in (0, 1, 50, 99, 100, 101, 1000, 2550, 4999, 5000, 5001, 10_000):
        assert get_lr(it, cfg) == nanogpt_lr(it, *args), it
    assert get_lr(0, cfg) == pytest.approx(1e-3 / 101)
    assert get_lr(100, cfg) == pytest.approx(1e-3)  # warmup done: the peak
    assert get_lr(2550, cfg) == pytest.approx((1e-3 + 1e-4) / 2)  # half way through the decay
    assert get_lr(5000, cfg) == pytest.approx(1e-4) and get_lr(6000, cfg) == 1e-4
    lrs = [get_lr(it, cfg) for it in range(100, 5001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay
    assert get_lr(3000, make_config("gpu", decay_lr=False)) == 1e-3


def test_training_uses_the_schedule(run):
    cfg, _, hist = run
    assert [h["lr"] for h in hist["evals"]] == [get_lr(h["iter"], cfg) for h in hist["evals"]]


# ---- DDP on CPU ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, data_dir):
    out = tmp_path / "ddp"
    env = {**os.environ, "TINYGPT_DATA_SOURCE": str(SOURCE), "TINYGPT_DATA_DIR": str(data_dir),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "tinygpt", "train", "--preset", "smoke",
           "--set", "max_iters=10", "--set", "eval_interval=5", "--out", str(out), "--no-progress"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("best val loss") == 1  # only rank 0 reports and writes
    hist = load_history(out)
    assert [h["iter"] for h in hist["evals"]] == [0, 5, 10]
    losses = [h["val_loss"] for h in hist["evals"]]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["iters"] == 10
    ckpt = read_checkpoint(out / "ckpt.pt")
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the unwrapped model's names
    assert no_temp_files(out)
