"""Which path the training step takes: eager, torch.compile, and one CUDA graph for the whole step.

The gpu preset's step is launch-bound (12.2 % MFU on an H200: ~40 µs of work per kernel, hundreds of
kernels), so on CUDA the whole step — forward, backward, clipping and AdamW — is captured once as a
CUDA graph and replayed: one launch per step. Every path computes the same step; on CPU, where
graphs do not exist, a run's numbers do not depend on any of this (tests/test_step.py).

The environment variable TINYGPT_STEP chooses, for every run a process trains (the book's too, whatever
the notebook asks):

    auto (default)   compile as the config says; on CUDA also the graph, where the run allows one
    eager, compile   no graph
    graphs           the graph around the eager model
    compile+graphs   the graph around the compiled model
"""

import contextlib
import os
from dataclasses import dataclass

import torch

STEP_ENV = "TINYGPT_STEP"
CHOICES = ("auto", "eager", "compile", "graphs", "compile+graphs")


@dataclass(frozen=True)
class StepPath:
    compile: bool
    graphs: bool
    note: str = ""  # why a graph asked for is not used

    @property
    def name(self):
        return "+".join(["compile"] * self.compile + ["graphs"] * self.graphs) or "eager"


def graph_obstacle(cfg, device, world, dtype):
    """Why this run cannot replay its step as one CUDA graph; None if it can."""
    if not str(device).startswith("cuda"):
        return "not on CUDA"
    if world > 1:
        return "DDP (gradients are all-reduced between ranks)"
    if cfg.gradient_accumulation_steps > 1:
        return "gradient accumulation"
    if dtype == "float16":
        return "float16's loss scaling (its inf checks synchronise)"
    return None


def step_path(cfg, device, world=1, dtype="float32", choice=None):
    """The path this run's steps take: TINYGPT_STEP (or `choice`) against what the run allows."""
    choice = choice or os.environ.get(STEP_ENV) or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{STEP_ENV}={choice!r}: valid values are {', '.join(CHOICES)}")
    compile_ = cfg.compile if choice == "auto" else choice.startswith("compile")
    wants_graphs = choice == "auto" or choice.endswith("graphs")
    obstacle = graph_obstacle(cfg, device, world, dtype) if wants_graphs else None
    note = f"no CUDA graph: {obstacle}" if obstacle and choice != "auto" else ""
    return StepPath(compile_, wants_graphs and obstacle is None, note)


def _plain_groups(optimizer, state_dict):
    """Checkpoints as the eager path writes them: lr a float, capturable off (a CPU resume can read them)."""
    for group in state_dict["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = group["lr"].item()
        group["capturable"] = False
    return state_dict


def one_step(model, optimizer, x, y, ctx, grad_clip):
    """forward, backward, clipping, AdamW: a step without accumulation or loss scaling; returns the loss.

    The gradients are set to None first: in a CUDA graph's capture the backward then writes them (rather
    than adding to them), so every replay starts from fresh gradients."""
    optimizer.zero_grad(set_to_none=True)
    with ctx:
        loss = model(x, y)[1]
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


def cuda_graph(body):
    """Capture body() as a CUDA graph (recorded, not run); returns the function that replays it."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


class GraphStep:
    """The whole training step on static input buffers, captured after WARMUP eager steps, then replayed.

    The step is the eager one with accumulation 1 and no loss scaling (graph_obstacle): forward under
    autocast, backward, clipping, fused AdamW. AdamW reads its learning rate from a tensor (a float would
    be frozen into the graph), which `set_lr` fills before each step. `capture` is injectable: tests on
    CPU pass one that returns body itself, which runs every line that the graph would replay.
    """

    WARMUP = 3  # eager steps first: compilation, cuBLAS workspaces and AdamW's state exist before the capture

    def __init__(self, model, optimizer, cfg, ctx, device, capture=cuda_graph):
        self.model, self.optimizer, self.cfg, self.ctx, self.capture_fn = model, optimizer, cfg, ctx, capture
        self.replay_fn, self.eager_steps, self.failed = None, 0, None
        self.side = torch.cuda.Stream() if torch.device(device).type == "cuda" else None
        self.x = self.y = self.loss = None
        # CUDA's fused AdamW computes in float32 whether lr is a float or a float32 tensor; CPU's (tests) in double
        dtype = torch.float64 if torch.device(device).type == "cpu" else torch.float32
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(float(group["lr"]), dtype=dtype, device=device)
            group["capturable"] = True
        optimizer.register_state_dict_post_hook(_plain_groups)

    @property
    def ready(self):
        return self.replay_fn is not None

    def warming(self):
        """The context of the eager steps before the capture: a side stream on CUDA, as torch.cuda.graph's
        documentation asks (what they initialise lazily, such as cuBLAS workspaces, is then not tied to the
        stream the graph's work runs on); no context once the graph replays."""
        if self.ready or self.side is None:
            return contextlib.nullcontext()
        self.side.wait_stream(torch.cuda.current_stream())
        return torch.cuda.stream(self.side)

    def set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"].fill_(lr)

    def body(self):
        self.loss = one_step(self.model, self.optimizer, self.x, self.y, self.ctx, self.cfg.grad_clip)

    def try_capture(self, x, y, log=print):
        """After WARMUP eager steps, capture the step for batches shaped as x, y; on failure stay eager."""
        if self.ready or self.failed or self.eager_steps < self.WARMUP:
            return
        if self.side is not None:
            torch.cuda.current_stream().wait_stream(self.side)
        self.x, self.y = x.clone(), y.clone()
        try:
            self.replay_fn = self.capture_fn(self.body)
        except Exception as e:  # an op that cannot be captured: the eager step computes the same, slower
            self.failed = f"{type(e).__name__}: {e}"
            self.optimizer.zero_grad(set_to_none=True)
            log(f"CUDA graph capture failed, training on without it ({self.failed})")

    def step(self, x, y):
        """One replayed step on (x, y); returns the loss tensor (the graph's, overwritten by the next step)."""
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.replay_fn()
        return self.loss
