"""What the chapters' cells do: say where they run, and show a chapter's comparison with the baseline."""

import datetime
import os
import platform

import torch

from .. import environ
from ..device import resolve_device


def environment(device="auto"):
    """Print date, preset, device and versions (the first code cell of every chapter); returns the device.

    The preset comes from `book run` (TINYGPT_PRESET), which also records each page's wall time in
    its metadata ("tinygpt_run") and in the run log.
    """
    threads = environ.get("TINYGPT_TORCH_THREADS")  # names the variable when its value is bad
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or "CPU")
    import matplotlib
    import numpy
    print(f"executed {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {device} ({name}, "
          f"{torch.get_num_threads()} threads)")
    preset = os.environ.get("TINYGPT_PRESET")
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    print(f"python {platform.python_version()}, torch {torch.__version__}{cuda}, numpy {numpy.__version__}, "
          f"matplotlib {matplotlib.__version__}" + (f"; book run --preset {preset}" if preset else ""))
    return device


def comparison(chapter, params, jobs=1, retrain=False, root=None, device="auto"):
    """Chapters 2–4's comparison: load or train the planned runs, show the chapter's rows of the scale's main
    table and its headline figure (validation curves, differences with seeds). Returns (runs, table)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from . import plots, prose, study

    runs, table = study.train_and_compare(study.chapter_runs(chapter, params), jobs, retrain, root, device)
    display(prose.comparison_table(table))
    plots.comparison(runs, table, ["baseline"] + list(params["variants"]))
    plt.show()
    return runs, table


def gap_during_training(runs):
    """The difference to the baseline at every evaluation (a figure), and what it says (a paragraph)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from . import plots, prose, regime
    from .results import load_histories

    gap = regime.gap_over_training(load_histories(runs.path))
    fig, ax = plt.subplots(figsize=(6.6, 3.4))
    plots.gap_over_training(gap, ax)
    plt.show()
    display(Markdown(prose.gap_paragraph(gap)))
    return gap
