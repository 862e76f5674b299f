"""scripts/device_speed.sh at the smoke preset on CPU: every section runs, up to what a CPU allows.

On CPU the CUDA graph is replaced by its eager body (--fake-graphs), so GraphStep's every line runs and
its losses equal the eager ones exactly; compiling is left out (minutes on this machine; tests/test_step.py
compares it). The notebook tool chain is made unimportable, as on the device image.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or ROOT.parent / "shared" / "data").resolve()
MISSING_ON_DEVICE = ("papermill", "nbclient", "nbformat", "ipykernel", "jupytext", "jupyter_client")


@pytest.mark.slow
def test_device_speed_at_smoke(tmp_path):
    if not (SOURCE / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no raw text at {SOURCE}")
    blocked = tmp_path / "blocked"
    for name in MISSING_ON_DEVICE:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the device image')\n")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYGPT_")}
    env.update(OUT=str(out), PYTHON=sys.executable, PYTHONPATH=str(blocked), TINYGPT_DATA_SOURCE=str(SOURCE),
               TINYGPT_DATA_DIR=str(tmp_path / "data"))
    # processes "1,0": a section that fails (no pool of 0 processes) must not lose the others
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_speed.sh"), "smoke", "--fake-graphs", "--rounds",
                           "2", "--iters", "4", "--processes", "1,0", "--process-seconds", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["speed.json", "speed.log", "speed.md"]
    r = json.loads((out / "speed.json").read_text())
    for name in ("paths", "run", "checks", "eval", "variants", "nanogpt"):
        assert "error" not in r[name] and "skipped" not in r[name], (name, r[name])
    assert "error" in r["processes"]  # the section that failed, recorded
    assert set(r["paths"]["rows"]) == {"eager", "graphs"} and r["paths"]["best"] in r["paths"]["rows"]
    assert r["run"]["iters"] == 40 and r["run"]["wall_s"] > 0 and r["run"]["step_path"] == "eager"
    # the graph's body gives the eager losses exactly; stacked evaluation the per-batch numbers exactly
    assert r["checks"]["max_abs_diff"] == {"eager": 0.0, "graphs": 0.0}
    assert len(set(r["eval"]["val_estimate"].values())) == 1 and len(set(r["eval"]["full"].values())) == 1
    assert set(r["variants"]["eager"]) >= {"baseline", "soft_window", "hard_window", "structure_gate"}
    assert r["variants"]["eager"]["baseline"]["ratio"] == 1.0
    assert set(r["nanogpt"]["ms"]) == {"nanoGPT eager", f"tinygpt {r['paths']['best']}"}
    md = (out / "speed.md").read_text()
    for heading in ("step per path", "One whole run", "Evaluation", "Variants", "nanoGPT", "Checks"):
        assert heading in md, heading
    assert "**processes**" in md
    assert "processes" in (out / "speed.log").read_text()
