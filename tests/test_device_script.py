"""scripts/device_book.sh in a fresh venv that holds only what the GPU device image holds.

The device image has torch, numpy, pandas, scipy, matplotlib, seaborn, tqdm and a few common
packages, but not the notebook tool chain; the carried wheels (scripts/device_wheels.py, the same
selection `make device-wheels` makes) must supply the rest. The device runs Python 3.12; this
test builds the venv from the interpreter running it (3.11 in CI, where torch's CPU wheel is
3.11's) and fetches the same package selection for that version: all but two of the carried wheels
(pyzmq, rpds-py) are pure Python or abi3, the same files on either version.
"""

import importlib
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or ROOT.parent / "shared" / "data").resolve()  # the script cds
IMAGE = ["numpy", "pandas", "scipy", "matplotlib", "seaborn", "tqdm"]  # beside torch, what the book needs of it


def _device_wheels():
    sys.path.insert(0, str(ROOT / "scripts"))  # scripts/ is not a package
    try:
        return importlib.import_module("device_wheels")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_wheel_selection_leaves_out_what_the_image_has(tmp_path):
    dw = _device_wheels()
    assert dw.wheel_name("jupyter_client-8.10.0-py3-none-any.whl") == "jupyter-client"
    assert dw.wheel_name("PyYAML-6.0.4-cp312-cp312-manylinux2014_x86_64.whl") in dw.DEVICE_HAS
    assert {"torch", "numpy", "pandas", "matplotlib", "seaborn", "tqdm"} <= dw.DEVICE_HAS
    assert not {dw.normalize(p) for p in dw.BOOK_TOOLS} & dw.DEVICE_HAS  # else the device would not lack them


def test_flops_and_plan_of_a_chunk():
    from tinygpt.book import throughput
    from tinygpt.presets import make_config
    cfg = make_config("gpu")
    # nanoGPT's estimate_mfu: 6N + 12·L·H·Q·T per token, N = 10.65 M non-embedding parameters
    assert throughput.flops_per_token(cfg) == 6 * 10_646_784 + 12 * 6 * 6 * 64 * 256
    assert throughput.mfu(790e12 / throughput.flops_per_token(cfg), cfg) == pytest.approx(1.0)
    chunk = dict(variants=["soft_window", "hard_window", "alibi"])
    three = throughput.plan("gpu", ["01", "02"], {**chunk, "n_seeds": 3, "baseline_seeds": 3}, tokens_per_s=2e6)
    assert three["runs"] == 12 and three["names"] == ["alibi", "baseline", "hard_window", "soft_window"]
    # seeds shrink to fit: 12 runs need three["minutes"]; 8 runs (2 seeds) need two thirds of that
    assert throughput.fit_seeds("gpu", ["01", "02"], chunk, 2e6, three["minutes"] * 60, 3) == 3
    assert throughput.fit_seeds("gpu", ["01", "02"], chunk, 2e6, three["minutes"] * 60 * 0.7, 3) == 2
    assert throughput.fit_seeds("gpu", ["01", "02"], chunk, 2e6, 1.0, 3) == 1


def test_probe_times_every_step_path_and_picks_the_shortest_run():
    """On CPU every path but compile is the eager step (no CUDA graphs); the probe still times each in a fresh
    process, keeps the one whose run is shortest (steps plus warm-up) and then packs processes on it."""
    from tinygpt.book import throughput
    logs = []
    out = throughput.probe("smoke", counts=(1, 2), seconds=0.5, paths=("eager", "graphs"), log=logs.append)
    assert set(out["paths"]) == {"eager", "graphs"} and out["step"] in out["paths"]
    runs = {k: v["run_s"] for k, v in out["paths"].items()}
    assert runs[out["step"]] == min(runs.values())
    assert [r["n"] for r in out["rows"]][:1] == [1] and out["n"] in (1, 2)
    assert any("one process, graphs" in line for line in logs)


@pytest.mark.slow
def test_device_script_at_smoke_in_a_device_like_venv(tmp_path):
    if not (SOURCE / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no raw text at {SOURCE}")
    dw = _device_wheels()
    venv, whl, out = tmp_path / "venv", tmp_path / "whl", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = str(venv / "bin" / "python")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    present = tmp_path / "present.txt"
    kept, relied = dw.fetch(whl, python=version, present=present)
    assert any(k.startswith("papermill-") for k in kept) and any(k.startswith("ipykernel-") for k in kept)
    # the image: torch (the CPU build CI installs) and its scientific stack, plus the few packages it
    # holds that the carried wheels rely on (pyyaml, requests…); nothing of the notebook tool chain
    torch_req = os.environ.get("TORCH", "torch==2.13.0")
    subprocess.run([py, "-m", "pip", "install", "-q", torch_req, *IMAGE, *relied], check=True)
    assert subprocess.run([py, "-c", "import papermill"], capture_output=True).returncode != 0

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYGPT_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(OUT=str(out), PYTHON=py, WHL=str(whl), SITE=str(tmp_path / "site"), BUILD=str(tmp_path / "build"),
               TINYGPT_DATA_SOURCE=str(SOURCE), PATH=f"{venv / 'bin'}:{env['PATH']}")
    script = str(ROOT / "scripts" / "device_book.sh")
    proc = subprocess.run(["bash", script, "smoke", "01", "--seeds", "2", "--parallel", "1", "--deadline", "1500"],
                          env=env, capture_output=True, text=True, timeout=1600)
    log = (out / "device.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    # the venv lacked the tool chain (only what the image holds anyway, e.g. pandas's tzdata, is skipped)
    assert re.search(rf"installing \d+ of {len(kept)} wheels", log), log[:2000]
    assert all((tmp_path / "site" / pkg).is_dir() for pkg in ("papermill", "nbclient", "ipykernel", "jupytext"))
    assert "smoke: chapter 01 at the smoke preset" in log

    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"device.log", "book.tar.gz", "results.tar.gz", "bench.md", "bench.json"} <= set(files)
    with tarfile.open(out / "book.tar.gz") as tar:
        names = tar.getnames()
        assert "book/01_baseline.ipynb" in names and "smoke/book/01_baseline.ipynb" in names
        nb = json.load(tar.extractfile("book/01_baseline.ipynb"))
        assert nb["metadata"]["tinygpt_run"]["preset"] == "smoke" and nb["metadata"]["tinygpt_run"]["seconds"] > 0
        run_log = json.load(tar.extractfile("book/_run_log.json"))
    assert run_log["notebooks"]["01_baseline"]["status"] == "ok"
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    with tarfile.open(out / "results.tar.gz") as tar:
        assert "results/smoke/baseline/seed0/metrics.json" in tar.getnames()
        assert not [n for n in tar.getnames() if n.endswith(".pt")]  # checkpoints never come back
    bench = json.loads((out / "bench.json").read_text())
    assert [r["run"] for r in bench["rows"]] == ["baseline/seed0", "baseline/seed1"]
    assert all(r["tokens_per_s"] > 0 for r in bench["rows"])

    # a second run finds every package present and installs nothing
    proc = subprocess.run(["bash", script, "smoke", "--check"], env={**env, "OUT": str(tmp_path / "out2")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "nothing installed" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.slow
def test_book_run_takes_the_probes_step_path(tmp_path):
    """The 2026-12-04 lease's first call trained nothing: its probe found that compiling does not pay and the
    script passed `--set compile=False` to `book run`, which takes notebook parameters only. The probe's step
    path now reaches every run as TINYGPT_STEP; here a probe that chose the eager path (compile off) drives the
    script's own `book run` call at the smoke preset, in this venv (no wheels to install)."""
    if not (SOURCE / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no raw text at {SOURCE}")
    probe = dict(json.loads((ROOT / "results" / "bench" / "h200-probe.json").read_text()), step="eager", n=1)
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    (tmp_path / "whl").mkdir()
    out, build = tmp_path / "out", tmp_path / "build"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYGPT_", "PYTHONPATH"))}
    env.update(OUT=str(out), PYTHON=sys.executable, WHL=str(tmp_path / "whl"), BUILD=str(build),
               PROBE=str(tmp_path / "probe.json"), TINYGPT_DATA_SOURCE=str(SOURCE))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_book.sh"), "smoke", "01", "--seeds", "2",
                           "--no-smoke", "--deadline", "900"], env=env, capture_output=True, text=True, timeout=1000)
    log = (out / "device.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "step path: TINYGPT_STEP=eager, 1 runs at once" in log
    assert "unknown notebook parameter" not in log
    for seed in (0, 1):
        metrics = json.loads((build / "results" / "smoke" / "baseline" / f"seed{seed}" / "metrics.json").read_text())
        assert metrics["step_path"] == "eager" and metrics["iters"] == 40
    assert json.loads((out / "probe.json").read_text())["step"] == "eager"  # the probe used comes back

