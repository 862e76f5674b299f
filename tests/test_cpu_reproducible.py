"""The CPU training path is bit for bit that of the code that trained the committed results/cpu.

A fresh clone retrains some of results/cpu's runs and must reproduce their numbers exactly, so every
change to the model, the attention kernels, the step or the evaluation must leave the cpu preset's
numbers as they were. This trains a few iterations of every variant at the cpu preset twice, with
this checkout's tinygpt and with REFERENCE's (extracted from git history into a temporary folder),
each in a fresh process with one torch thread (as the book's runs train), and compares the periodic
estimates, the whole-split losses and the final weights for equality, not closeness.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# main when the speed work began: the code that trained (or retrained) every committed cpu run
REFERENCE = "7cc9c2f35aaba83463d5f11304687a371745d054"

# cpu preset; 6 steps with evaluations at 0, 3, 6 (eval_iters 20, as the preset), then the whole split
FINGERPRINT = r"""
import hashlib, json, sys, tempfile, torch
from tinygpt.presets import make_config
from tinygpt.train import train
from tinygpt.checkpoint import read_checkpoint, read_json
from tinygpt.variants import VARIANTS
torch.set_num_threads(1)
out = {}
for v in VARIANTS:
    with tempfile.TemporaryDirectory() as d:
        train(make_config("cpu", variant=v, max_iters=6, eval_interval=3, device="cpu"), d, progress=False,
              log=lambda *a: None)
        h, m = read_json(d + "/history.json"), read_json(d + "/metrics.json")
        sd = read_checkpoint(d + "/ckpt.pt")["model"]
        digest = hashlib.sha256(b"".join(sd[k].numpy().tobytes() for k in sorted(sd))).hexdigest()
        out[v] = {"evals": [(e["iter"], e["train_loss"], e["val_loss"]) for e in h["evals"]],
                  "full": [m["val_loss_full"], m["final_val_loss_full"]], "weights": digest}
print(json.dumps(out))
"""


def _fingerprints(trees, env):
    """FINGERPRINT's output with each tree's tinygpt, the processes running side by side."""
    procs = [subprocess.Popen([sys.executable, "-c", FINGERPRINT], env={**env, "PYTHONPATH": str(tree)}, cwd=tree,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tree in trees]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


@pytest.mark.slow
def test_cpu_preset_is_bit_identical_to_the_reference(tmp_path, data_dir):
    import os
    ref = tmp_path / "reference"
    ref.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", REFERENCE, "tinygpt"], capture_output=True)
    if archive.returncode:
        pytest.skip(f"commit {REFERENCE[:7]} is not in this clone's history (a shallow clone?)")
    subprocess.run(["tar", "-x", "-C", str(ref)], input=archive.stdout, check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ours, theirs = _fingerprints([ROOT, ref], env)
    assert list(ours) == list(theirs)
    for v in theirs:
        assert ours[v] == theirs[v], v
    assert len({r["weights"] for r in theirs.values()}) == len(theirs)  # not vacuous: every variant differs
