"""What `book run` records: book/_run_log.json (each notebook's last run, where and how long) and the
summary table it prints.

    write_run_log(results, preset, out_dir, overrides=None, jobs=1, timings=None) -> Path
    format_summary(results) -> str
    published_preset(book_dir) -> the preset a book folder holds ("cpu" for the committed book/)
"""

import json
import os
import platform
from pathlib import Path

from ..files import write_json
from .execute import now

RUN_LOG = "_run_log.json"
PUBLISHED_PRESET = "cpu"  # the committed book/ is executed at this preset (its _run_log.json's "preset")


def published_preset(book_dir):
    """The preset the published book folder holds: its run log's "preset", else PUBLISHED_PRESET."""
    try:
        return json.loads((Path(book_dir) / RUN_LOG).read_text(encoding="utf-8")).get("preset") \
            or PUBLISHED_PRESET
    except (OSError, ValueError, AttributeError):
        return PUBLISHED_PRESET


def cpu_count():
    """CPUs this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def format_summary(results):
    """A plain-text table: notebook, status, seconds, first line of the error."""
    rows = [("notebook", "status", "seconds", "error")]
    rows += [(r["notebook"], r["status"], f"{r['seconds']:.1f}", r["error"]) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    ok = sum(r["status"] == "ok" for r in results)
    total = sum(r["seconds"] for r in results)
    lines.append(f"{ok} of {len(results)} notebooks ran without error ({total:.1f} s of notebook time)")
    return "\n".join(lines)


def _device(preset, overrides):
    """Where the notebooks' models run: the preset's device (smoke is CPU-only), resolved here."""
    try:
        import torch
    except ImportError:
        return "unknown (torch not importable by the runner)"
    from ..presets import PRESETS

    device = str((overrides or {}).get("device", PRESETS.get(preset, {}).get("device", "auto")))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()}, {cpu_count()} CPUs)"


def write_run_log(results, preset, out_dir, overrides=None, jobs=1, timings=None):
    """Record each notebook's last run in out_dir/_run_log.json (merged with the notebooks already there).

    {"notebooks": {"01_baseline": {"preset", "notebook", "status", "seconds", "started_at", "error",
    "parameters", "kernel", "jobs", "python", "torch", "device"}, …}, "updated_at": …}
    """
    path = Path(out_dir) / RUN_LOG
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(log.get("notebooks"), dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        log = {"notebooks": {}}
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    device = _device(preset, overrides)
    for r in results:
        log["notebooks"][r["notebook"]] = dict(
            preset=preset, notebook=r["notebook"], status=r["status"], seconds=r["seconds"],
            started_at=r["started_at"], error=r["error"], parameters={"preset": preset, **(overrides or {})},
            kernel=r.get("kernel"), jobs=jobs, python=platform.python_version(), torch=torch_version, device=device)
    log["notebooks"] = dict(sorted(log["notebooks"].items()))
    log["preset"] = preset  # the folder's preset: `book run` publishes into book/ only at book/'s own
    log["updated_at"] = now()
    if timings:  # the whole command: wall clock and the shared training stage
        log["last_command"] = dict(preset=preset, jobs=jobs, parameters={"preset": preset, **(overrides or {})},
                                   notebooks=[r["notebook"] for r in results], finished_at=now(), **timings)
    write_json(path, log)
    return path
