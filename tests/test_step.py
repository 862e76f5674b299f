"""tinygpt.step: the training step's paths (eager, torch.compile, one CUDA graph) compute the same run.

CUDA graphs do not exist on CPU; GraphStep's capture is injectable, and here it returns the step's body
itself, so that every line the graph would replay runs: the static buffers, the learning rate as a
tensor, the batch order, the checkpoints. On CPU that path must give the eager path's run bit for bit.
"""

import functools
import json

import pytest
import torch

import tinygpt.train as tr
from tinygpt.checkpoint import read_checkpoint
from tinygpt.presets import make_config
from tinygpt.step import GraphStep, StepPath, graph_obstacle, step_path

pytestmark = pytest.mark.usefixtures("data_dir")


def run(tmp_path, name, monkeypatch, path=None, **overrides):
    cfg = make_config("smoke", max_iters=12, eval_interval=5, **overrides)
    with monkeypatch.context() as mp:
        if path is not None:
            mp.setattr(tr, "step_path", lambda *a, **k: path)
            mp.setattr(tr, "GraphStep", functools.partial(GraphStep, capture=lambda body: body))
        history = tr.train(cfg, tmp_path / name, progress=False, log=lambda *a: None)
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    return history, metrics, read_checkpoint(tmp_path / name / "ckpt.pt")


def losses(history):
    return [(h["iter"], h["train_loss"], h["val_loss"], h["lr"]) for h in history["evals"]]


@pytest.mark.parametrize("variant", ["baseline", "soft_window"])
def test_graph_step_body_equals_the_eager_step(tmp_path, monkeypatch, variant):
    eager = run(tmp_path, "eager", monkeypatch, variant=variant)
    graphs = run(tmp_path, "graphs", monkeypatch, StepPath(compile=False, graphs=True), variant=variant)
    assert eager[1]["step_path"] == "eager" and graphs[1]["step_path"] == "graphs"
    assert losses(graphs[0]) == losses(eager[0])  # 12 steps: 3 eager, then 9 replays of the body
    for k, w in eager[2]["model"].items():
        assert torch.equal(graphs[2]["model"][k], w), k
    # the checkpoint is the eager path's: lr a float, capturable off, the same AdamW state
    for ge, gg in zip(eager[2]["optimizer"]["param_groups"], graphs[2]["optimizer"]["param_groups"]):
        assert gg == ge
    for k, st in eager[2]["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(graphs[2]["optimizer"]["state"][k][name], t), (k, name)


def test_a_failed_capture_trains_on_eagerly(tmp_path, monkeypatch):
    def refuse(body):
        raise RuntimeError("operation not permitted when stream is capturing")

    eager = run(tmp_path, "eager", monkeypatch)
    logs = []
    with monkeypatch.context() as mp:
        mp.setattr(tr, "step_path", lambda *a, **k: StepPath(compile=False, graphs=True))
        mp.setattr(tr, "GraphStep", functools.partial(GraphStep, capture=refuse))
        history = tr.train(make_config("smoke", max_iters=12, eval_interval=5), tmp_path / "refused",
                           progress=False, log=logs.append)
    assert losses(history) == losses(eager[0])
    assert any("capture failed" in line for line in logs)
    metrics = json.loads((tmp_path / "refused" / "metrics.json").read_text())
    assert metrics["step_path"] == "graphs (capture failed: eager)"


@pytest.mark.slow
def test_compiled_step_equals_eager_on_cpu(tmp_path, monkeypatch):
    """torch.compile (inductor's C++ kernels on CPU) against eager: the same run up to float rounding."""
    monkeypatch.setenv("TINYGPT_STEP", "compile")
    compiled = run(tmp_path, "compiled", monkeypatch)
    monkeypatch.setenv("TINYGPT_STEP", "eager")
    eager = run(tmp_path, "eager", monkeypatch, compile=True)  # the config asks; the environment overrides
    assert compiled[1]["step_path"] == "compile" and eager[1]["step_path"] == "eager"
    for (i, tc, vc, _), (_, te, ve, _) in zip(losses(compiled[0]), losses(eager[0])):
        # 12 AdamW steps at lr 3e-3 amplify rounding differences of fused kernels: 1e-4 nats allows that
        assert tc == pytest.approx(te, abs=1e-4) and vc == pytest.approx(ve, abs=1e-4), i


def test_step_path_choices(monkeypatch):
    cpu, gpu = make_config("cpu"), make_config("gpu")
    monkeypatch.delenv("TINYGPT_STEP", raising=False)
    assert step_path(cpu, "cpu") == StepPath(False, False)  # the cpu preset: eager, as its runs were trained
    assert step_path(gpu, "cuda") == StepPath(True, True)  # the gpu preset on CUDA: compiled, one graph
    assert step_path(gpu, "cuda", dtype="float16") == StepPath(True, False)
    assert step_path(gpu, "cpu").graphs is False
    monkeypatch.setenv("TINYGPT_STEP", "eager")
    assert step_path(gpu, "cuda") == StepPath(False, False)
    monkeypatch.setenv("TINYGPT_STEP", "graphs")
    assert step_path(gpu, "cuda") == StepPath(False, True)
    assert step_path(gpu, "cuda", world=2).note == "no CUDA graph: DDP (gradients are all-reduced between ranks)"
    monkeypatch.setenv("TINYGPT_STEP", "compile+graphs")
    assert step_path(cpu, "cpu") == StepPath(True, False, "no CUDA graph: not on CUDA")
    monkeypatch.setenv("TINYGPT_STEP", "fast")
    with pytest.raises(ValueError, match="TINYGPT_STEP"):
        step_path(cpu, "cpu")
    assert graph_obstacle(make_config("gpu", gradient_accumulation_steps=2), "cuda", 1, "bfloat16")
