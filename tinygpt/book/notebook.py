"""What every notebook's first cells do: say where it runs, check its parameters, load its runs."""

import datetime
import os
import platform

import torch

from ..device import resolve_device


def environment(device="auto"):
    """Print date, preset, device and versions (the first code cell of every chapter); returns the device.

    The preset comes from `book run` (TINYGPT_PRESET), which also records each page's wall time in
    its metadata ("tinygpt_run") and in the run log.
    """
    threads = int(os.environ.get("TINYGPT_TORCH_THREADS", 0))
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
