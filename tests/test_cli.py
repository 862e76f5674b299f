"""The command line: `tinygpt prepare | train | sample | bench`, mostly in process (each subprocess imports torch)."""

import contextlib
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from tinygpt.cli import main

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or ROOT.parent / "shared" / "data").resolve()  # CI: relative
SEP = "\n---------------\n"  # printed after each sample
OPTIONS = {
    "prepare": ["--source", "--force", "shakespeare_char"],
    "train": ["--preset", "--set", "--out", "--resume", "--no-progress", "n_layer", "learning_rate"],
    "sample": ["--ckpt", "--prompt", "--num-samples", "--max-new-tokens", "--temperature", "--top-k", "--seed",
               "--device", "--trusted"],
    "bench": ["--preset", "--variant", "--iters", "--warmup", "--rounds", "--processes", "--set", "soft_window"],
}


def run_main(capsys, *argv):
    """(exit code, stdout, stderr) of tinygpt.cli.main in this process; argparse's exits count as exit codes."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clean_error(rc, err, *fragments):
    assert rc not in (0, None), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module", autouse=True)
def _prepared(data_dir):
    return data_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """`tinygpt train --preset smoke` (shortened) into a folder: (folder, what it printed)."""
    out = tmp_path_factory.mktemp("run")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--preset", "smoke", "--set", "max_iters=10", "--set", "eval_interval=5",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    return out, buf.getvalue()


@pytest.fixture
def offline(monkeypatch):
    def urlopen(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


# ---- help ----

def test_top_level_help(capsys):
    rc, out, _ = run_main(capsys, "--help")
    assert rc == 0
    for command in ("prepare", "train", "sample", "bench"):
        assert command in out


@pytest.mark.parametrize("command", list(OPTIONS))
def test_subcommand_help(capsys, command):
    rc, out, _ = run_main(capsys, command, "--help")
    assert rc == 0
    assert out.startswith(f"usage: tinygpt {command}")
    for option in OPTIONS[command]:
        assert option in out, option


def test_no_command_is_an_error(capsys):
    rc, _, err = run_main(capsys)
    assert rc == 2 and "required" in err


def test_python_dash_m_entry_point():
    p = subprocess.run([sys.executable, "-m", "tinygpt", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "usage: tinygpt" in p.stdout


# ---- train ----

def test_train_prints_best_val_loss_and_iteration(trained):
    out, printed = trained
    metrics = json.loads((out / "metrics.json").read_text())
    last = printed.strip().splitlines()[-1]
    assert last == f"best val loss {metrics['best_val_loss']:.4f} at iter {metrics['best_iter']} ({out})"
    history = json.loads((out / "history.json").read_text())
    assert [h["iter"] for h in history["evals"]] == [0, 5, 10]
    assert history["config"]["preset"] == "smoke" and history["config"]["max_iters"] == 10


def test_train_resume_of_finished_run(capsys, trained):
    out, printed = trained
    rc, stdout, _ = run_main(capsys, "train", "--preset", "smoke", "--set", "max_iters=10", "--set", "eval_interval=5",
                             "--out", out, "--no-progress", "--resume")
    assert rc == 0
    assert stdout.splitlines()[0] == f"resumed {out} at iter 10"
    assert stdout.splitlines()[-1] == printed.strip().splitlines()[-1]


def test_train_resume_with_other_settings_fails_cleanly(capsys, trained):
    out, _ = trained
    rc, _, err = run_main(capsys, "train", "--preset", "smoke", "--set", "max_iters=10", "--set", "eval_interval=5",
                          "--set", "n_layer=3", "--out", out, "--no-progress", "--resume")
    assert_clean_error(rc, err, "tinygpt train: error:", "another config", "'n_layer': (2, 3)")


def test_train_default_out_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", str(SOURCE))  # a relative one would be read from tmp_path
    monkeypatch.chdir(tmp_path)
    rc, stdout, _ = run_main(capsys, "train", "--preset", "smoke", "--set", "max_iters=2", "--set", "eval_interval=2",
                             "--set", "eval_iters=1", "--set", "variant=soft_window", "--no-progress")
    assert rc == 0 and "best val loss" in stdout
    assert (tmp_path / "out" / "smoke-soft_window" / "metrics.json").is_file()


@pytest.mark.parametrize("argv, fragments", [
    (["--set", "n_layer=x"], ["n_layer must be of type int", "'x'"]),
    (["--set", "nosuchkey=1"], ["unknown config key 'nosuchkey'"]),
    (["--set", "n_layer"], ["override 'n_layer' must look like key=value"]),
    (["--set", "dropout=1.5"], ["dropout must be in [0, 1)"]),
    (["--set", "variant=nosuch"], ["variant='nosuch' is unknown"]),
    (["--set", "device=tpu"], ["device='tpu' is not a device torch knows"]),
    (["--set", "weight_decay=-0.1"], ["weight_decay must be a finite number ≥ 0 (got -0.1)"]),
    (["--set", "grad_clip=-1"], ["grad_clip must be a finite number ≥ 0 (got -1.0)"]),
    (["--set", "warmup_iters=-5"], ["warmup_iters must be a finite number ≥ 0 (got -5)"]),
    (["--set", "learning_rate=inf"], ["learning_rate must be a finite number > 0 (got inf)"]),
    (["--set", "learning_rate=nan"], ["learning_rate must be a finite number > 0 (got nan)"]),
    (["--set", "min_lr=nan"], ["min_lr must be a finite number > 0 (got nan)"]),
    (["--set", "min_lr=0"], ["min_lr must be a finite number > 0 (got 0.0)"]),
    (["--set", "grad_clip=inf"], ["grad_clip must be a finite number ≥ 0 (got inf)"]),
    (["--set", "beta2=1"], ["beta2 must be in [0, 1) (got 1.0)"]),
    (["--set", "threads=-1"], ["threads must be a finite number ≥ 0 (got -1)"]),
])
def test_train_bad_overrides(capsys, tmp_path, argv, fragments):
    rc, _, err = run_main(capsys, "train", "--preset", "smoke", "--out", tmp_path / "run", "--no-progress", *argv)
    assert_clean_error(rc, err, "tinygpt train: error:", *fragments)
    assert rc == 2
    assert not (tmp_path / "run").exists()  # nothing written before the config is checked


def test_train_unknown_preset(capsys, tmp_path):
    rc, _, err = run_main(capsys, "train", "--preset", "nosuch", "--out", tmp_path)
    assert_clean_error(rc, err, "argument --preset: invalid choice: 'nosuch'")
    assert rc == 2


# ---- run folders ----

def short_train(out, *extra):
    return ["train", "--preset", "smoke", "--set", "max_iters=4", "--set", "eval_interval=2", "--set", "eval_iters=1",
            "--out", out, "--no-progress", *extra]


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_train_refuses_a_folder_another_run_holds(capsys, tmp_path):
    from tinygpt.checkpoint import folder_lock
    out = tmp_path / "run"
    with folder_lock(out):  # as a `tinygpt train --out run` still running holds it
        rc, _, err = run_main(capsys, *short_train(out))
        assert sorted(files(out)) == [".lock"]  # nothing written
    assert_clean_error(rc, err, "tinygpt train: error:", f"{out} is in use by another run")
    assert not out.exists()  # the holder's early end leaves no lock-only folder


def test_train_refuses_a_used_folder_without_resume_or_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_main(capsys, *short_train(out))[0] == 0
    before = files(out)
    rc, _, err = run_main(capsys, *short_train(out, "--set", "n_layer=3"))
    assert_clean_error(rc, err, f"--out {out} is not empty", "--resume", "--overwrite")
    assert files(out) == before  # the finished run is intact: no new config.json beside the old metrics.json
    (out / "notes.txt").write_text("mine")
    rc, _, _ = run_main(capsys, *short_train(out, "--set", "n_layer=3", "--overwrite"))
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["model"]["n_layer"] == 3
    assert json.loads((out / "history.json").read_text())["config"]["model"]["n_layer"] == 3
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes the run's files, nothing else


def test_train_resume_without_a_checkpoint_says_so(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = run_main(capsys, *short_train(tmp_path / "empty", "--resume"))
    assert_clean_error(rc, err, "--resume:", "holds no checkpoint (ckpt.pt)", "drop --resume")
    assert list((tmp_path / "empty").iterdir()) == []  # did not start afresh, and left no lock behind


def test_train_out_that_is_a_file_or_cannot_be_written(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    rc, _, err = run_main(capsys, *short_train(tmp_path / "file"))
    assert_clean_error(rc, err, "tinygpt train: error:", "is a file, not a folder")
    rc, _, err = run_main(capsys, *short_train(tmp_path / "file" / "run"))
    assert_clean_error(rc, err, "tinygpt train: error:", "cannot write to --out")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        rc, _, err = run_main(capsys, *short_train(tmp_path / "ro" / "run"))
        assert_clean_error(rc, err, "cannot write to --out", "Permission denied")


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a child of a background job may inherit SIGINT ignored


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_during_train_prints_where_to_resume(capsys, tmp_path, sig, code, word):
    """SIGTERM, a scheduler's stop, acts as Ctrl-C does: one line, the checkpoint whole, the command to go on."""
    out = tmp_path / "run"
    argv = ["train", "--preset", "smoke", "--set", "max_iters=100000", "--set", "eval_interval=5", "--out", str(out),
            "--no-progress"]
    p = subprocess.Popen([sys.executable, "-m", "tinygpt", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 180
        while not (out / "history.json").is_file():  # the first checkpoint is written: training is under way
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() else "too slow"
            time.sleep(0.2)
        rc, _, err = run_main(capsys, *argv, "--resume")  # a second `train` into the same folder, meanwhile
        assert_clean_error(rc, err, f"{out} is in use by another run")
        p.send_signal(sig)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"tinygpt train: {word}; the last checkpoint is {out / 'ckpt.pt'} (iter ")
    assert lines[0].endswith("; continue with: tinygpt train --preset smoke --set max_iters=100000 --set "
                             f"eval_interval=5 --out {out} --resume")
    torch.load(out / "ckpt.pt", weights_only=True)  # whole, and resumable
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_while_saving_a_checkpoint(capsys, tmp_path, monkeypatch):
    """ENOSPC on the second checkpoint: one line naming the file and the fix, the first checkpoint intact and
    resumable to the uninterrupted run's result."""
    import tinygpt.files
    real_fsync, writes = os.fsync, []

    def fsync(fd):  # the file system fills up as ckpt.pt is written the second time
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        writes.append(name)
        if name.startswith(".ckpt.pt.") and sum(w.startswith(".ckpt.pt.") for w in writes) == 2:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    out = tmp_path / "run"
    monkeypatch.setattr(tinygpt.files.os, "fsync", fsync)
    rc, _, err = run_main(capsys, *short_train(out))
    monkeypatch.undo()
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.strip() == (f"tinygpt train: error: cannot write {out / 'ckpt.pt'} (No space left on device): free "
                           f"some disk space; the previous ckpt.pt is intact; then the last checkpoint is "
                           f"{out / 'ckpt.pt'} (iter 0); continue with: tinygpt train --preset smoke --set max_iters=4 "
                           f"--set eval_interval=2 --set eval_iters=1 --out {out} --resume")
    assert torch.load(out / "ckpt.pt", weights_only=True)["iter_num"] == 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert run_main(capsys, *short_train(out, "--resume"))[0] == 0
    whole = tmp_path / "whole"
    assert run_main(capsys, *short_train(whole))[0] == 0
    assert json.loads((out / "metrics.json").read_text())["val_loss_full"] == \
        json.loads((whole / "metrics.json").read_text())["val_loss_full"]


@pytest.mark.parametrize("name", ["history.json", "config.json"])
def test_resume_of_a_finished_run_repairs_a_corrupt_json_file(capsys, tmp_path, name):
    out = tmp_path / "run"
    assert run_main(capsys, *short_train(out))[0] == 0
    good = (out / name).read_text()
    (out / name).write_text(good[: len(good) // 2])  # cut short, as a full disk or a crash leaves it
    rc, stdout, _ = run_main(capsys, *short_train(out, "--resume"))
    assert rc == 0 and f"rewrote {out / name} from the checkpoint (it was corrupt)" in stdout
    assert (out / name).read_text() == good


def test_train_removes_what_a_killed_write_left_in_its_folder(capsys, tmp_path):
    """kill -9 during a checkpoint write leaves a temporary file (up to a checkpoint's size): the next `train` into
    the folder removes it (it holds the folder's lock, so no live process writes there)."""
    out = tmp_path / "run"
    assert run_main(capsys, *short_train(out))[0] == 0
    (out / ".ckpt.pt.k9x2a.tmp").write_bytes(b"half a checkpoint")
    assert run_main(capsys, *short_train(out, "--resume"))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "best.pt", "ckpt.pt", "config.json", "history.json",
                                                     "metrics.json"]


def test_bad_environment_variable_fails_before_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("x")
    rc, _, err = run_main(capsys, *short_train(tmp_path / "run"))
    assert_clean_error(rc, err, f"tinygpt train: error: TINYGPT_DATA_DIR='{tmp_path / 'file'}' is a file, not a "
                                "folder: it sets where prepared data sets go")
    assert not (tmp_path / "run").exists()
    monkeypatch.delenv("TINYGPT_DATA_DIR")
    monkeypatch.setenv("TINYGPT_RESULT", "typo")  # unknown: a warning, not an error
    rc, _, err = run_main(capsys, "sample", "--ckpt", tmp_path / "nope.pt")
    assert "warning: unknown variable(s) TINYGPT_RESULT (ignored)" in err


def test_an_early_error_leaves_no_lock_only_folder(capsys, tmp_path):
    out = tmp_path / "runs" / "a"
    rc, _, err = run_main(capsys, *short_train(out, "--set", "block_size=100000000"))
    assert_clean_error(rc, err, "block_size 100000000 is too long")
    assert not (tmp_path / "runs").exists()


# ---- sample ----

def samples(stdout):
    parts = stdout.split(SEP)
    assert parts[-1] == "", stdout
    return parts[:-1]


def test_sample_prints_prompt_and_new_characters(capsys, trained):
    out, _ = trained
    argv = ["sample", "--ckpt", out / "best.pt", "--num-samples", 2, "--max-new-tokens", 20, "--seed", 1]
    rc, stdout, _ = run_main(capsys, *argv)
    assert rc == 0
    texts = samples(stdout)
    assert len(texts) == 2
    assert all(t.startswith("\n") and len(t) == 1 + 20 for t in texts)  # the default prompt is a newline

    rc, again, _ = run_main(capsys, *argv)
    assert rc == 0 and again == stdout  # the same seed, the same text
    rc, other, _ = run_main(capsys, *argv[:-1], 2)
    assert rc == 0 and other != stdout

    rc, stdout, _ = run_main(capsys, *argv, "--prompt", "ROMEO:\\n", "--top-k", 0, "--temperature", 1.5)
    assert rc == 0
    texts = samples(stdout)
    assert len(texts) == 2 and all(t.startswith("ROMEO:\n") and len(t) == 7 + 20 for t in texts)


def test_sample_from_latest_checkpoint(capsys, trained):
    out, _ = trained
    rc, stdout, _ = run_main(capsys, "sample", "--ckpt", out / "ckpt.pt", "--num-samples", 1, "--max-new-tokens", 5)
    assert rc == 0 and len(samples(stdout)) == 1


def test_sample_prompt_outside_vocabulary(capsys, trained):
    out, _ = trained
    rc, _, err = run_main(capsys, "sample", "--ckpt", out / "best.pt", "--prompt", "caf\u00e9 \u20ac")
    assert_clean_error(rc, err, "outside the vocabulary", repr(["\u00e9", "\u20ac"]))


@pytest.mark.parametrize("argv, fragment", [
    (["--num-samples", 0], "--num-samples must be ≥ 1 (got 0)"),
    (["--top-k", -5], "--top-k must be ≥ 0 (got -5)"),
    (["--temperature", "nan"], "--temperature must be a positive number (got nan)"),
    (["--max-new-tokens", -5], "--max-new-tokens must be ≥ 1 (got -5)"),
    (["--device", "tpu"], "device='tpu' is not a device torch knows"),
])
def test_sample_bad_arguments(capsys, trained, argv, fragment):
    out, _ = trained
    rc, stdout, err = run_main(capsys, "sample", "--ckpt", out / "best.pt", *argv)
    assert_clean_error(rc, err, "tinygpt sample: error:", fragment)
    assert len(err.strip().splitlines()) == 1 and "corrupt" not in err and stdout == ""


def test_sample_json_file_is_not_a_checkpoint(capsys, trained):
    out, _ = trained
    for trusted in ([], ["--trusted"]):
        rc, _, err = run_main(capsys, "sample", "--ckpt", out / "metrics.json", *trusted)
        assert_clean_error(rc, err, "metrics.json is not a checkpoint (a JSON file")
        assert "corrupt" not in err


def test_sample_streams_its_text_and_stops_on_ctrl_c(trained):
    out, _ = trained
    p = subprocess.Popen([sys.executable, "-m", "tinygpt", "sample", "--ckpt", str(out / "best.pt"),
                          "--num-samples", "2", "--max-new-tokens", "1000000000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    try:
        shown, deadline = b"", time.monotonic() + 180
        while len(shown) < 50 and time.monotonic() < deadline:  # text arrives long before the last token
            if select.select([p.stdout], [], [], 1)[0]:
                shown += os.read(p.stdout.fileno(), 4096)
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert len(shown) >= 50 and shown.startswith(b"\n")
    assert p.returncode == 130 and "Traceback" not in stderr.decode()


def test_streamed_text_equals_the_batch_text(trained):
    from tinygpt.checkpoint import load
    from tinygpt.sample import generate_text, vocabulary
    out, _ = trained
    model, itos = load(out / "best.pt"), vocabulary(torch.load(out / "best.pt", weights_only=True))
    steps = []
    streamed = generate_text(model, itos, "A", 3, 40, seed=5, stream=steps.append)
    assert streamed == generate_text(model, itos, "A", 3, 40, seed=5)
    assert len(steps) == 40 and ["A" + "".join(s[i] for s in steps) for i in range(3)] == streamed


def test_sample_missing_checkpoint(capsys, tmp_path):
    rc, _, err = run_main(capsys, "sample", "--ckpt", tmp_path / "nope.pt")
    assert_clean_error(rc, err, "tinygpt sample: error:", "no checkpoint at", "nope.pt")


def test_sample_corrupt_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(4096))
    rc, _, err = run_main(capsys, "sample", "--ckpt", bad)
    assert_clean_error(rc, err, "tinygpt sample: error:", "cannot read checkpoint", "corrupt")


def test_sample_truncated_checkpoint(capsys, trained, tmp_path):
    out, _ = trained
    bad = tmp_path / "half.pt"
    data = (out / "best.pt").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    rc, _, err = run_main(capsys, "sample", "--ckpt", bad)
    assert_clean_error(rc, err, "cannot read checkpoint", "corrupt or truncated")


def test_sample_file_that_is_not_a_checkpoint(capsys, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    rc, _, err = run_main(capsys, "sample", "--ckpt", other)
    assert_clean_error(rc, err, "is not a tinygpt or nanoGPT checkpoint")


# ---- bench ----

@pytest.mark.slow
def test_bench_table(capsys):
    rc, stdout, _ = run_main(capsys, "bench", "--preset", "smoke", "--iters", 2, "--warmup", 1, "--rounds", 3,
                             "--variant", "soft_window")
    assert rc == 0
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("preset smoke, device cpu,")
    header = [c.strip() for c in lines[1].strip("|").split("|")]
    assert header[:4] == ["variant", "ms/iter", "× baseline", "tokens/s"]
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[3:])}
    assert set(rows) == {"baseline", "soft_window"}
    assert rows["baseline"][2] == "1.00"
    assert float(rows["soft_window"][2]) > 0 and float(rows["soft_window"][1]) > 0
    q1, q3 = (float(x) for x in rows["soft_window"][4].split("–"))  # the paired ratios' quartiles
    assert q1 <= float(rows["soft_window"][2]) <= q3


@pytest.mark.parametrize("option", ["--iters", "--rounds"])
def test_bench_zero_iterations_or_rounds(capsys, option):
    rc, _, err = run_main(capsys, "bench", "--preset", "smoke", option, 0)
    assert_clean_error(rc, err, "tinygpt bench: error:", f"{option} must be ≥ 1 (got 0)")


def test_bench_bad_override(capsys):
    rc, _, err = run_main(capsys, "bench", "--preset", "smoke", "--set", "nosuchkey=1")
    assert_clean_error(rc, err, "tinygpt bench: error:", "nosuchkey")


# ---- prepare ----

def test_prepare_offline(capsys, tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", str(SOURCE))
    rc, stdout, _ = run_main(capsys, "prepare", "shakespeare_char")
    assert rc == 0
    assert stdout.strip() == f"prepared shakespeare_char in {tmp_path / 'shakespeare_char'}"
    for name in ("train.bin", "val.bin", "meta.json", "meta.pkl"):
        assert (tmp_path / "shakespeare_char" / name).is_file()
    assert json.loads((tmp_path / "shakespeare_char" / "meta.json").read_text())["vocab_size"] == 65
    rc, again, _ = run_main(capsys, "prepare")  # shakespeare_char by default; already prepared: kept
    assert rc == 0 and again == stdout


def test_prepare_empty_source_fails_cleanly(capsys, tmp_path, monkeypatch, offline):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", str(tmp_path / "empty"))
    rc, _, err = run_main(capsys, "prepare", "shakespeare_char")
    assert_clean_error(rc, err, "tinygpt prepare: error:", "tinyshakespeare/input.txt", "TINYGPT_DATA_SOURCE")
    assert not (tmp_path / "data" / "shakespeare_char" / "meta.json").exists()


def test_prepare_without_source_or_network_fails_cleanly(capsys, tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TINYGPT_DATA_SOURCE")
    rc, _, err = run_main(capsys, "prepare", "shakespeare_char")
    assert_clean_error(rc, err, "tinygpt prepare: error:", "downloading", "failed", "TINYGPT_DATA_SOURCE")


def test_prepare_unknown_dataset(capsys):
    rc, _, err = run_main(capsys, "prepare", "nosuch")
    assert_clean_error(rc, err, "unknown dataset 'nosuch'")


def test_prepare_failure_in_a_real_process(tmp_path):
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "TINYGPT_DATA_DIR": str(tmp_path / "data"), "TINYGPT_DATA_SOURCE": str(tmp_path / "empty")}
    p = subprocess.run([sys.executable, "-m", "tinygpt", "prepare", "shakespeare_char"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and re.search(r"tinygpt prepare: error: .*lacks", p.stderr)


@pytest.mark.slow
def test_bench_cpu_peak_memory_is_exact_and_channels_keep_it_linear():
    """At block_size 1024 the q/k channels keep soft_window's and alibi's memory within 1.1× the baseline's
    (the dense T×T offset with its gradient took 3.7×), and the measurement repeats to the MiB."""
    from tinygpt.bench import cpu_peak_mb
    over = {"block_size": 1024}
    base = cpu_peak_mb("cpu", "baseline", over)
    assert base is not None and base > 100
    for v in ("soft_window", "alibi"):
        peak = cpu_peak_mb("cpu", v, over)
        assert peak <= 1.1 * base, (v, peak, base)
    assert abs(cpu_peak_mb("cpu", "baseline", over) - base) < 2


def test_bench_ratio_cancels_a_drifting_machine(monkeypatch):
    """A machine that slows down steadily: each variant's ratio is to the baseline timed around it, so a
    variant that costs 1.3 baseline steps reads 1.30 (timed after the baseline alone, it would read more)."""
    from tinygpt import bench as B
    clock = {"t": 0.0, "calls": 0}

    def fake_step_fn(cfg, device, ctx):
        cost = 1.3 if cfg.model.variant == "soft_window" else 1.0

        def step():
            clock["calls"] += 1
            clock["t"] += cost * (1 + 0.05 * clock["calls"])  # 5% slower at every step
        return step

    monkeypatch.setattr(B, "_step_fn", fake_step_fn)
    monkeypatch.setattr(B, "cpu_peak_mb", lambda *a: 100.0)
    monkeypatch.setattr(B.time, "perf_counter", lambda: clock["t"])
    rows = {r["variant"]: r for r in B.bench("smoke", ["soft_window"], iters=3, warmup=0, rounds=5, progress=False)}
    assert rows["soft_window"]["ratio"] == pytest.approx(1.3, abs=0.01)
    assert rows["soft_window"]["ratio_q1"] <= rows["soft_window"]["ratio"] <= rows["soft_window"]["ratio_q3"]
    assert rows["baseline"]["ratio"] == 1.0


def test_bench_pool_takes_every_round_of_every_process():
    """Pooled rows: medians and quartiles over all rounds of all processes, not a median of medians."""
    from tinygpt.bench import _row, pool
    where = dict(device="cpu", preset="smoke", threads=2)

    def rows(base_ms, ratios):
        ms = [base_ms * r for r in ratios]
        return [_row("baseline", [base_ms] * len(ratios), [1.0] * len(ratios), base_ms, 100, 50.0, 50.0, **where),
                _row("soft_window", ms, ratios, base_ms, 100, 55.0, 50.0, **where)]

    a, b = rows(10.0, [1.0, 1.1, 1.2]), rows(20.0, [1.3, 1.4])
    pooled = {r["variant"]: r for r in pool([a, b])}
    s = pooled["soft_window"]
    assert s["ratio"] == pytest.approx(1.2) and s["processes"] == 2 and len(s["round_ratios"]) == 5
    assert a[1]["ratio"] == pytest.approx(1.1) and b[1]["ratio"] == pytest.approx(1.35)
    assert s["ratio_q1"] < s["ratio"] < s["ratio_q3"]
    assert s["ms_per_iter"] == pytest.approx(12.0)  # median of 10, 11, 12, 26, 28
    assert s["ratio_fastest"] == pytest.approx(1.0)  # 10 ms against the fastest baseline, 10 ms
    assert s["tokens_per_s"] == pytest.approx(100 / 12.0 * 1000)
    assert s["mem_ratio"] == pytest.approx(1.1) and pooled["baseline"]["ratio"] == 1.0


@pytest.mark.slow
def test_bench_in_several_processes(capsys, tmp_path):
    out = tmp_path / "bench.json"
    rc, stdout, _ = run_main(capsys, "bench", "--preset", "smoke", "--variant", "alibi", "--iters", 1, "--warmup", 1,
                             "--rounds", 2, "--processes", 2, "--json", out)
    assert rc == 0 and "in each of 2 processes" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["baseline", "alibi"]
    assert all(r["processes"] == 2 and len(r["round_ratios"]) == 4 for r in rows)


def test_bench_zero_processes(capsys):
    rc, _, err = run_main(capsys, "bench", "--preset", "smoke", "--processes", 0)
    assert_clean_error(rc, err, "tinygpt bench: error:", "--processes must be ≥ 1 (got 0)")
