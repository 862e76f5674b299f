"""The TINYGPT_* environment variables: one table, checked where a command starts, read by name.

    check()                        # every variable that is set, at once; EnvError names the first bad one
    get("TINYGPT_TORCH_THREADS")   # the parsed value (None when unset); EnvError names the variable
    absolute_path_env()            # relative paths made absolute against the directory the command started in

A notebook kernel or a pool worker reads the same variables, far from the command that set them: a
bad value must fail there with the variable's name too, not as "invalid literal for int()".
"""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class EnvError(ValueError):
    """A TINYGPT_* variable with a value that cannot work; the message names it and the fix."""


def _positive_int(text):
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError("must be a whole number ≥ 1")
    return int(text)


def _gpus(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number ≥ 0")
    return value


def _executor(text):
    if text not in ("local", "ray"):
        raise ValueError("must be local or ray")
    return text


def _folder(text):
    """A folder, or a path where one can be made (not a file)."""
    path = Path(os.path.expanduser(text))
    if path.exists() and not path.is_dir():
        raise ValueError("is a file, not a folder")
    return path


def _existing(text):
    """An existing path, read from the current directory or, as data.py does for kernels, the repository."""
    path = Path(os.path.expanduser(text))
    if not path.exists() and not (not path.is_absolute() and (REPO_ROOT / path).exists()):
        raise ValueError("does not exist")
    return path


def _preset(text):
    from .presets import PRESETS
    if text not in PRESETS:
        raise ValueError(f"must be one of {', '.join(PRESETS)}")
    return text


def _step(text):
    from .step import CHOICES
    if text not in CHOICES:
        raise ValueError(f"must be one of {', '.join(CHOICES)}")
    return text


VARIABLES = {  # name: (parser, what it sets, for the error message)
    "TINYGPT_DATA_SOURCE": (_existing, "the raw texts' folder, laid out like ../shared/data (default: download)"),
    "TINYGPT_DATA_DIR": (_folder, "where prepared data sets go (default: data/)"),
    "TINYGPT_RESULTS": (_folder, "the run store's folder (default: results/)"),
    "TINYGPT_TORCH_THREADS": (_positive_int, "the torch threads of each notebook kernel (default: the CPUs shared "
                                             "out)"),
    "TINYGPT_EXECUTOR": (_executor, "where the book's training runs execute (default: local)"),
    "TINYGPT_GPUS_PER_RUN": (_gpus, "the GPUs each Ray task reserves, 0.25 packing four on a GPU (default: 1 "
                                    "where there are GPUs)"),
    "TINYGPT_RAY_CPUS": (_positive_int, "the CPUs of a local Ray (default: every CPU)"),
    "TINYGPT_PRESET": (_preset, "the preset `book run` passes to its kernels"),
    "TINYGPT_STEP": (_step, "the training step's path (tinygpt/step.py; default: auto)"),
}
PATH_VARIABLES = ("TINYGPT_DATA_SOURCE", "TINYGPT_DATA_DIR", "TINYGPT_RESULTS")


def get(name, default=None):
    """The variable's parsed value, `default` when it is unset or empty; EnvError when it cannot work."""
    text = os.environ.get(name, "")
    if not text:
        return default
    parse, what = VARIABLES[name]
    try:
        return parse(text)
    except ValueError as e:
        raise EnvError(f"{name}={text!r} {e}: it sets {what}; fix it or unset it") from None


def check():
    """Parse every TINYGPT_* variable that is set (EnvError on the first bad one); warn about unknown ones."""
    for name in VARIABLES:
        get(name)
    unknown = sorted(k for k in os.environ if k.startswith("TINYGPT_") and k not in VARIABLES)
    if unknown:
        print(f"warning: unknown variable(s) {', '.join(unknown)} (ignored); tinygpt reads "
              f"{', '.join(VARIABLES)}", file=sys.stderr)


def absolute_path_env():
    """Make the path variables absolute, resolved against the current directory (where the command
    started): notebook kernels run in notebooks/ and would read a relative path from there. Returns the
    values it replaced."""
    old = {}
    for name in PATH_VARIABLES:
        if os.environ.get(name):
            old[name] = os.environ[name]
            os.environ[name] = os.path.abspath(os.path.expanduser(os.environ[name]))
    return old
