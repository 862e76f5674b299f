"""tinygpt: nanoGPT's character-level Shakespeare model and the attention variants the book studies."""

from .capture import capture
from .checkpoint import load
from .model import GPT, GPTConfig
from .presets import PRESETS, TrainConfig, make_config
from .variants import VARIANTS

__all__ = ["GPT", "GPTConfig", "VARIANTS", "PRESETS", "TrainConfig", "make_config", "capture", "load"]
__version__ = "0.1.0"
