"""Fill the wheel folder that travels to the device machine (`make device-wheels`).

    python scripts/device_wheels.py                      # .whl/: Python 3.12 wheels the device lacks
    python scripts/device_wheels.py --python 3.11 --dest /tmp/w --present /tmp/present.txt

The device image (Python 3.12, no registry) lacks the book's notebook tool chain. pip resolves
BOOK_TOOLS with every dependency for the target interpreter (binary wheels only, the device
README's manylinux platforms); the wheels of packages the image already holds (DEVICE_HAS) are
dropped, the rest go to --dest. --present writes the names of the dropped ones: the packages
the carried wheels rely on the image for (the device-like test venv installs exactly those).
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BOOK_TOOLS = ["papermill", "nbclient", "nbformat", "ipykernel", "jupyter_client", "jupytext", "ipywidgets",
              "latex2mathml"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
# The nvidia-h200 image's Python packages, as the device's KINDS.md lists them (read 2026-11-17)
DEVICE_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp""".split())


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path):
    """The distribution a wheel file holds, normalized: pyzmq-27.3.0-cp312-….whl -> pyzmq."""
    return normalize(Path(path).name.split("-")[0])


def fetch(dest, python="3.12", present=None, pip=None):
    """Download BOOK_TOOLS and their dependencies for `python`; keep in dest those the device lacks."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*(pip or [sys.executable, "-m", "pip"]), "download", "-q", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", tmp, *BOOK_TOOLS]
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        subprocess.run(cmd, check=True)
        for old in dest.glob("*.whl"):  # one version of each: two would stop the whole install there
            old.unlink()
        kept, relied = [], []
        for whl in sorted(Path(tmp).glob("*.whl")):
            if wheel_name(whl) in DEVICE_HAS:
                relied.append(wheel_name(whl))
            else:
                shutil.move(str(whl), dest / whl.name)
                kept.append(whl.name)
    if present:
        Path(present).write_text("\n".join(relied) + "\n")
    return kept, relied


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", default=".whl", help="wheel folder (default .whl, git-ignored; it travels with `carry`)")
    p.add_argument("--python", default="3.12", help="target Python version (default 3.12, the device's)")
    p.add_argument("--present", help="write the names of the dependencies the device image already holds here")
    args = p.parse_args(argv)
    kept, relied = fetch(args.dest, args.python, args.present)
    size = sum(f.stat().st_size for f in Path(args.dest).glob("*.whl"))
    print(f"{len(kept)} wheels for Python {args.python} in {args.dest} ({size / 2**20:.1f} MiB); "
          f"the device image provides {len(relied)} more: {' '.join(relied)}")
    if size > 32 * 2**20:
        print("warning: over half of the 64 MiB that may travel", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
