"""Training presets: nanoGPT's shakespeare_char configs as importable, checked objects.

    cfg = make_config("cpu", n_layer=8, variant="soft_window")   # any field, checked
    cfg = make_config("gpu", **parse_overrides(["dropout=0.1"]))  # strings from the command line
"""

import dataclasses
import math
from dataclasses import dataclass, field

from .model import GPTConfig


@dataclass
class TrainConfig:
    preset: str = "custom"
    model: GPTConfig = field(default_factory=GPTConfig)
    dataset: str = "shakespeare_char"  # a key of tinygpt.data.DATASETS
    data_fraction: float = 1.0  # train on the first share of the training split (data-size studies)
    batch_size: int = 12
    gradient_accumulation_steps: int = 1
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    decay_lr: bool = True
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    device: str = "auto"  # auto: cuda if available, else cpu
    dtype: str = "auto"  # auto: bfloat16 autocast on CUDA where supported, float32 elsewhere
    compile: bool = False
    # torch threads on CPU: part of the run, since float sums split over other thread counts round
    # differently. 0: this process's count, recorded as resolved when training starts.
    threads: int = 0

    def __post_init__(self):
        for name in ("batch_size", "gradient_accumulation_steps", "max_iters", "eval_interval", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1 (got {getattr(self, name)})")
        if not 0 < self.data_fraction <= 1:
            raise ValueError(f"data_fraction must be in (0, 1] (got {self.data_fraction})")
        for name in ("weight_decay", "grad_clip", "warmup_iters", "lr_decay_iters", "threads"):
            if not 0 <= getattr(self, name) < math.inf:  # also refuses NaN
                raise ValueError(f"{name} must be a finite number ≥ 0 (got {getattr(self, name)})")
        for name in ("learning_rate", "min_lr"):  # inf or NaN would only show as a diverged loss
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0 (got {getattr(self, name)})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16 (got {self.dtype!r})")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        return cls(model=GPTConfig(**d.pop("model")), **d)


# nanoGPT's config/train_shakespeare_char.py, exactly (best val loss 1.4697 in its README)
GPU = dict(
    model=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
    batch_size=64, max_iters=5000, lr_decay_iters=5000, learning_rate=1e-3, min_lr=1e-4,
    warmup_iters=100, beta2=0.99, eval_interval=250, eval_iters=200, compile=True,
)
# nanoGPT's README command for a CPU ("val loss 1.88"); everything else as in the gpu preset
CPU = dict(
    model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False),
    batch_size=12, max_iters=2000, lr_decay_iters=2000, learning_rate=1e-3, min_lr=1e-4,
    warmup_iters=100, beta2=0.99, eval_interval=250, eval_iters=20, compile=False,
)
# a few seconds end to end: for the tests and for trying a notebook
SMOKE = dict(
    model=dict(n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0, bias=False),
    batch_size=8, max_iters=40, lr_decay_iters=40, learning_rate=3e-3, min_lr=3e-4,
    warmup_iters=4, beta2=0.99, eval_interval=10, eval_iters=2, compile=False, device="cpu",
)
PRESETS = {"gpu": GPU, "cpu": CPU, "smoke": SMOKE}

_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in ("model", "preset")}
_MODEL_FIELDS = {f.name: f for f in dataclasses.fields(GPTConfig)}


def _check_type(key, value, typ):
    ok = isinstance(value, typ) and not (typ is not bool and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise TypeError(f"{key} must be of type {typ.__name__} (got {value!r} of type {type(value).__name__})")
    return float(value) if typ is float else value


def make_config(preset="cpu", **overrides):
    """The preset's TrainConfig with any field overridden; unknown keys and wrong types raise."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    train = {k: v for k, v in PRESETS[preset].items() if k != "model"}
    model = dict(PRESETS[preset]["model"])
    for key, value in overrides.items():
        if key in _TRAIN_FIELDS:
            train[key] = _check_type(key, value, _TRAIN_FIELDS[key].type)
        elif key in _MODEL_FIELDS:
            model[key] = _check_type(key, value, _MODEL_FIELDS[key].type)
        else:
            valid = sorted(_TRAIN_FIELDS) + sorted(_MODEL_FIELDS)
            raise KeyError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
    model.setdefault("vocab_size", 65)  # replaced by the data set's own size when training
    return TrainConfig(preset=preset, model=GPTConfig(**model), **train)


def _parse_value(key, text, typ):
    if typ is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise TypeError(f"{key} must be true or false (got {text!r})")
    try:
        return typ(text)
    except ValueError:
        raise TypeError(f"{key} must be of type {typ.__name__} (got {text!r})") from None


def parse_overrides(pairs):
    """['n_layer=8', 'dropout=0.1'] → {'n_layer': 8, 'dropout': 0.1}, typed by the field."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"override {pair!r} must look like key=value")
        key, text = pair.split("=", 1)
        key = key.strip()
        fields = _TRAIN_FIELDS.get(key) or _MODEL_FIELDS.get(key)
        if fields is None:
            raise KeyError(f"unknown config key {key!r}; see `tinygpt train --help` for the valid keys")
        out[key] = _parse_value(key, text.strip(), fields.type)
    return out
