"""What every notebook's first cells do: say where it runs, check its parameters, load its runs."""

import datetime
import os
import platform

import torch

from ..device import resolve_device


def environment(device="auto"):
    """Print date, device and versions (the first code cell of every chapter); returns the device."""
    threads = int(os.environ.get("TINYGPT_TORCH_THREADS", 0))
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or "CPU")
    import matplotlib
    import numpy
    print(f"executed {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {device} ({name}, "
          f"{torch.get_num_threads()} threads)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
          f"matplotlib {matplotlib.__version__}")
    return device
