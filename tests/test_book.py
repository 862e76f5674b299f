"""`tinygpt book run`: parameters reach the notebooks, sources stay untouched, failures are contained.

Throwaway notebooks in tmp_path stand in for the book's chapters; each execution starts a real
kernel (papermill), so the notebooks are a few lines long.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygpt import cli
from tinygpt.book import execute, site
from tinygpt.book import runner as book

pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

CHECK_PRESET = """\
if preset not in ("smoke", "cpu", "gpu"):
    raise ValueError(f"unknown preset {preset!r}")"""
REPORT = """\
import os
print(f"preset={preset} extra={extra!r} threads={os.environ.get('TINYGPT_TORCH_THREADS')} cwd={os.getcwd()}")"""


def make_notebook(folder, name, *cells):
    """A notebook with a tagged parameters cell (preset = "smoke", extra = 0), then `cells`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"),
                nbformat.v4.new_code_cell('preset = "smoke"  # smoke, cpu or gpu\nextra = 0  # anything',
                                          metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def outputs_text(path):
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") + o.get("evalue", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


@pytest.fixture
def no_thread_env(monkeypatch):
    monkeypatch.delenv(book.THREADS_ENV, raising=False)


@pytest.fixture(autouse=True)
def own_results(tmp_path, monkeypatch):
    """A results folder of the test's own: `book run` checks and cleans the results folder before it starts."""
    monkeypatch.setenv("TINYGPT_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_run_injects_parameters_keeps_sources_and_survives_a_failure(tmp_path, capsys, no_thread_env):
    src, out = tmp_path / "notebooks", tmp_path / "site"
    paths = [make_notebook(src, "01_first", CHECK_PRESET, REPORT),
             make_notebook(src, "02_broken", CHECK_PRESET, 'raise RuntimeError("boom\\nsecond line")'),
             make_notebook(src, "03_third", CHECK_PRESET, REPORT)]
    before = {p: p.read_bytes() for p in paths}
    out.mkdir()
    (out / "02_broken.ipynb").write_text('{"a good copy": "from an earlier run"}')

    rc = book.run("cpu", overrides=book.parse_sets(["extra=3"]), notebooks_dir=src, out_dir=out, progress=False)

    assert rc == 1  # one notebook failed
    assert {p: p.read_bytes() for p in paths} == before  # sources never written
    assert sorted(p.name for p in out.iterdir()) == ["01_first.ipynb", "02_broken.failed.ipynb", "02_broken.ipynb",
                                                     "03_third.ipynb", "_run_log.json"]  # no temporary files left
    assert "a good copy" in (out / "02_broken.ipynb").read_text()  # a failure never replaces a good copy
    for name in ("01_first", "03_third"):  # parameters injected, kernel ran in the notebooks folder
        text = outputs_text(out / f"{name}.ipynb")
        assert f"preset=cpu extra=3 threads={book.cpu_count()} cwd={src}" in text
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
        assert "formats" not in nb.metadata.get("jupytext", {})  # no .py twin for executed copies
        # no absolute path of the machine that ran it: outside the repository, the names alone
        assert (nb.metadata.papermill.input_path, nb.metadata.papermill.output_path) == (f"{name}.ipynb",) * 2
    assert "boom" in outputs_text(out / "02_broken.failed.ipynb")  # the failing copy is written beside it
    assert nbformat.read(out / "02_broken.failed.ipynb", as_version=4).metadata.papermill.output_path == \
        "02_broken.failed.ipynb"
    from tinygpt.book.execute import repo_relative
    assert repo_relative(book.REPO_ROOT / "book" / "01_baseline.ipynb") == "book/01_baseline.ipynb"

    printed = capsys.readouterr().out
    assert "02_broken  FAILED" in printed and "RuntimeError: boom" in printed and "second line" not in printed
    assert "2 of 3 notebooks ran without error" in printed

    log = json.loads((out / "_run_log.json").read_text())["notebooks"]
    assert [log[n]["status"] for n in ("01_first", "02_broken", "03_third")] == ["ok", "FAILED", "ok"]
    entry = log["01_first"]
    assert entry["preset"] == "cpu" and entry["parameters"] == {"preset": "cpu", "extra": 3}
    assert entry["seconds"] > 0 and entry["started_at"][:2] == "20" and entry["python"] and entry["device"]


def test_unknown_preset_fails_with_the_notebooks_message(tmp_path, no_thread_env):
    src, out = tmp_path / "notebooks", tmp_path / "site"
    make_notebook(src, "01_first", CHECK_PRESET, REPORT)
    results = book.run_notebooks("nope", notebooks_dir=src, out_dir=out, progress=False)
    assert [(r["notebook"], r["status"], r["error"]) for r in results] == [
        ("01_first", "FAILED", "ValueError: unknown preset 'nope'")]
    assert (out / "01_first.failed.ipynb").exists() and not (out / "01_first.ipynb").exists()
    assert book.run("nope", notebooks_dir=src, out_dir=out, progress=False) == 1


@pytest.mark.slow
def test_cli_jobs_2_runs_01_alone_then_the_rest_in_parallel(tmp_path, capsys, no_thread_env):
    src, out = tmp_path / "notebooks", tmp_path / "site"
    for name in ("01_first", "02_second", "03_third"):
        make_notebook(src, name, CHECK_PRESET, REPORT)
    rc = cli.main(["book", "run", "--preset", "smoke", "--jobs", "2", "--set", "extra=two words",
                   "--notebooks-dir", str(src), "--out-dir", str(out), "--no-progress"])
    assert rc == 0
    assert "3 of 3 notebooks ran without error" in capsys.readouterr().out
    n = book.cpu_count()
    assert f"extra='two words' threads={n} " in outputs_text(out / "01_first.ipynb")  # alone: every CPU
    for name in ("02_second", "03_third"):  # two at a time: half each
        assert f"extra='two words' threads={max(1, n // 2)} " in outputs_text(out / f"{name}.ipynb")
    log = json.loads((out / "_run_log.json").read_text())["notebooks"]
    assert sorted(log) == ["01_first", "02_second", "03_third"] and log["02_second"]["jobs"] == 2


def test_find_notebooks_selects_by_prefix_or_name(tmp_path):
    for name in ("01_baseline", "02_query_windows", "03_structure_gating"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    (tmp_path / ".01_baseline.abc.running.ipynb").write_text("{}")  # a temporary file is never a notebook
    names = lambda sel: [p.stem for p in book.find_notebooks(tmp_path, sel)]
    assert names(None) == ["01_baseline", "02_query_windows", "03_structure_gating"]
    assert names(["03", "01"]) == ["01_baseline", "03_structure_gating"]
    assert names(["02_query", "02_query_windows.ipynb"]) == ["02_query_windows"]
    with pytest.raises(ValueError, match="matches '04'.*there are: 01_baseline"):
        book.find_notebooks(tmp_path, ["04"])
    with pytest.raises(FileNotFoundError):
        book.find_notebooks(tmp_path / "missing")


def test_stages_put_01_first_and_the_conclusions_last(tmp_path):
    names = ["01_baseline", "02_a", "03_b", "06_c", "07_conclusions"]
    assert [[p.stem for p in stage] for stage in book.stages(tmp_path / f"{n}.ipynb" for n in names)] == [
        ["01_baseline"], ["02_a", "03_b", "06_c"], ["07_conclusions"]]
    assert [[p.stem for p in s] for s in book.stages([tmp_path / "03_b.ipynb"])] == [["03_b"]]


def test_parse_sets_reads_literals():
    assert book.parse_sets(["a=1", "b=2.5", "c=True", "d=false", "e=soft_window", "f='x y'", "g=[1, 2]",
                            "h=None", "i=1e-3"]) == {
        "a": 1, "b": 2.5, "c": True, "d": False, "e": "soft_window", "f": "x y", "g": [1, 2], "h": None, "i": 0.001}
    for bad in ("novalue", "=3", "not a name=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            book.parse_sets([bad])


def test_run_refuses_to_write_into_the_sources(tmp_path):
    make_notebook(tmp_path, "01_first")
    with pytest.raises(ValueError, match="replace the sources"):
        book.run_notebooks("smoke", notebooks_dir=tmp_path, out_dir=tmp_path, progress=False)


def test_cli_help_and_arguments(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["book", "run", "--preset", "gpu", "--notebooks", "01", "03", "--jobs", "3",
                              "--kernel", "tiny", "--set", "n_seeds=2", "--set", "retrain=True"])
    assert (args.book_command, args.preset, args.notebooks, args.jobs, args.kernel, args.set) == (
        "run", "gpu", ["01", "03"], 3, "tiny", ["n_seeds=2", "retrain=True"])
    assert args.fn is cli.cmd_book and args.out_dir is None  # book/ at the published preset, else build/
    args = parser.parse_args(["book", "build", "--book-dir", "elsewhere", "--all"])
    assert (args.book_command, args.book_dir, args.all_pages, args.strict) == ("build", "elsewhere", True, False)
    for argv, words in ((["book", "--help"], ["run", "build"]),
                        (["book", "run", "--help"], ["--preset", "--notebooks", "--jobs", "--kernel", "--out-dir",
                                                     "--set", "TINYGPT_TORCH_THREADS"]),
                        (["book", "build", "--help"], ["--book-dir", "--all", "--strict"])):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert all(w in text for w in words), (argv, text)
    with pytest.raises(SystemExit):  # an unknown preset is refused before anything runs
        parser.parse_args(["book", "run", "--preset", "huge"])


def test_smoke_run_leaves_the_published_book_untouched(tmp_path, monkeypatch, capsys, no_thread_env):
    src, published = tmp_path / "notebooks", tmp_path / "book"
    make_notebook(src, "01_first", CHECK_PRESET, REPORT)
    published.mkdir()
    (published / "01_first.ipynb").write_text('{"the cpu chapter": 1}')
    (published / "_run_log.json").write_text('{"notebooks": {}, "preset": "cpu"}')
    (published / "_toc.yml").write_text("root: intro\n")
    before = {p.name: p.read_bytes() for p in published.iterdir()}
    monkeypatch.setattr(book, "BOOK_DIR", published)
    monkeypatch.setattr(book, "REPO_ROOT", tmp_path)

    rc = cli.main(["book", "run", "--preset", "smoke", "--notebooks-dir", str(src), "--no-progress"])

    assert rc == 0
    assert {p.name: p.read_bytes() for p in published.iterdir()} == before
    smoke = tmp_path / "build" / "book-smoke"
    assert "preset=smoke" in outputs_text(smoke / "01_first.ipynb")
    assert json.loads((smoke / "_run_log.json").read_text())["preset"] == "smoke"
    assert (smoke / "_toc.yml").read_text() == "root: intro\n"  # a book of its own: `book build --book-dir` it
    assert f"executed copies go to {smoke}" in capsys.readouterr().err


def test_unknown_notebook_parameter_is_an_error(tmp_path, capsys):
    src = tmp_path / "notebooks"
    make_notebook(src, "01_first", CHECK_PRESET)
    rc = cli.main(["book", "run", "--preset", "smoke", "--set", "nosuch=1", "--notebooks-dir", str(src),
                   "--out-dir", str(tmp_path / "site"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "unknown notebook parameter(s) nosuch (--set); the selected notebooks take: extra, preset" in err
    assert not (tmp_path / "site").exists()  # refused before anything ran


def executed(path, preset):
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"parameters": {"preset": preset}}
    nbformat.write(nb, path)


def test_build_refuses_mixed_presets_and_a_smoke_book(tmp_path, monkeypatch, capsys):
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text("{}\n")
    executed(tmp_path / "01_a.ipynb", "cpu")
    executed(tmp_path / "02_b.ipynb", "smoke")
    executed(tmp_path / "02_b.failed.ipynb", "gpu")  # a failed run is not part of the book
    assert site.build(tmp_path) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "different presets (cpu: 01_a; smoke: 02_b)" in err
    executed(tmp_path / "01_a.ipynb", "smoke")
    monkeypatch.setattr(site, "BOOK_DIR", tmp_path)  # a smoke book is refused where the published book lives
    assert site.build(tmp_path) == 2
    assert "smoke preset" in capsys.readouterr().err
    assert set(site.chapter_presets(book.BOOK_DIR).values()) <= {"cpu"}  # the committed book is one preset


def test_kernels_get_a_relative_data_source_resolved_where_the_command_started(tmp_path, monkeypatch,
                                                                               no_thread_env):
    """The README's `export TINYGPT_DATA_SOURCE=../shared/data`, while the kernels run in notebooks/."""
    source = Path(os.environ.get("TINYGPT_DATA_SOURCE") or book.REPO_ROOT.parent / "shared" / "data").resolve()
    if not (source / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no raw text at {source}")
    src, start = tmp_path / "clone" / "notebooks", tmp_path / "clone"
    make_notebook(src, "01_first", "from tinygpt.data import prepare\nprint('prepared in', prepare())")
    monkeypatch.chdir(start)
    monkeypatch.setenv("TINYGPT_DATA_SOURCE", os.path.relpath(source, start))
    monkeypatch.setenv("TINYGPT_DATA_DIR", str(tmp_path / "data"))
    rc = cli.main(["book", "run", "--preset", "smoke", "--notebooks", "01", "--notebooks-dir", str(src),
                   "--out-dir", str(tmp_path / "site"), "--no-progress"])
    assert rc == 0, outputs_text(tmp_path / "site" / "01_first.failed.ipynb")
    assert f"prepared in {tmp_path / 'data' / 'shakespeare_char'}" in outputs_text(tmp_path / "site" / "01_first.ipynb")


def test_build_needs_a_book_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="_config.yml"):
        site.build(tmp_path)


@pytest.mark.slow
def test_pretrain_trains_what_the_chapters_ask_for(tmp_path, no_thread_env):
    """`book run --jobs N` trains the planned runs first; the chapter then finds every run finished."""
    import os

    if not os.environ.get("TINYGPT_DATA_SOURCE") and not (book.REPO_ROOT / "data" / "shakespeare_char").exists():
        pytest.skip("no raw data: set TINYGPT_DATA_SOURCE")
    paths = book.find_notebooks(select=["05"])
    params = {"preset": "smoke", "out_dir": str(tmp_path / "results"), "n_seeds": 2}
    seconds, n = book.pretrain(paths, params, jobs=2, progress=False)
    done = sorted((tmp_path / "results" / "smoke").glob("*/seed*/metrics.json"))
    assert n == len(done) == 2 + 5  # two baseline seeds, five shape changes
    stamps = {p: p.stat().st_mtime_ns for p in done}
    [res] = book.run_notebooks("smoke", select=["05"], overrides=params, out_dir=tmp_path / "site", progress=False)
    assert res["status"] == "ok", res["error"]
    assert sorted((tmp_path / "results" / "smoke").glob("*/seed*/metrics.json")) == done  # nothing new trained
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # nothing trained again


def test_n_seeds_true_is_rejected():
    """papermill's `-p n_seeds True` arrives as a bool, which Python counts as the int 1."""
    from tinygpt.book import study
    study.check_parameters("smoke", n_seeds=2)
    for bad in (True, 0, 1.5):
        with pytest.raises(ValueError, match=r"parameter n_seeds must be a positive integer \(got " + repr(bad)):
            study.check_parameters("smoke", n_seeds=bad)


# ---- long jobs: timeouts, a lost kernel, Ctrl-C, leftovers, bad folders

def test_a_cell_that_never_returns_ends_in_bounded_time(tmp_path):
    """The cell timeout ends it, naming the cell; the kernel watch, probing all along, does not take a busy
    kernel for a lost one."""
    src = make_notebook(tmp_path / "notebooks", "01_hangs", "import time\ntime.sleep(10 ** 6)")
    t0 = time.monotonic()
    res = execute.execute_notebook(src, tmp_path / "out", {"preset": "smoke"}, cell_timeout=5, probe_after=1, grace=1)
    assert time.monotonic() - t0 < 90
    assert res["status"] == "FAILED" and res["attempts"] == 1
    assert res["error"] == "CellTimeout: cell 3 (`import time`) ran past the cell timeout (5 s); raise it with " \
                           "--cell-timeout"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01_hangs.failed.ipynb"]


# the user's hang: the kernel finishes a cell but its reply never reaches papermill (kernel and client idle, forever)
DROP_REPLY = """\
import os
kernel = get_ipython().kernel
send = kernel.session.send
def drop_reply(stream, msg_type, *args, **kwargs):
    if msg_type == "execute_reply" and not os.path.exists(MARK):
        open(MARK, "w").close()
        kernel.session.send = send
        return {"header": {}, "parent_header": {}, "metadata": {}, "content": {"status": "ok"}}
    return send(stream, msg_type, *args, **kwargs)
kernel.session.send = drop_reply"""


@pytest.mark.parametrize("losses", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_kernel_that_stops_answering_is_found_and_run_once_more(tmp_path, capfd, losses):
    mark = tmp_path / "mark"
    src = make_notebook(tmp_path / "notebooks", "01_lost", f"MARK = {str(mark)!r}\n" + DROP_REPLY, "print('after')")
    if losses == 2:  # the retry loses its reply too
        src.write_text(src.read_text().replace("not os.path.exists(MARK)", "True"))
    t0 = time.monotonic()
    res = execute.execute_notebook(src, tmp_path / "out", {"preset": "smoke"}, cell_timeout=600, probe_after=1,
                                   grace=5)  # a loaded machine may be slow to deliver the last outputs
    assert time.monotonic() - t0 < 150  # not the cell timeout
    lost = "KernelLost: the kernel finished cell 3 (`MARK = "
    assert f"01_lost: {lost}" in capfd.readouterr().err  # reported when it happens, with the notebook and cell
    assert res["attempts"] == 2
    if losses == 1:
        assert res["status"] == "ok" and "after" in outputs_text(tmp_path / "out" / "01_lost.ipynb")
    else:
        assert res["status"] == "FAILED" and res["error"].startswith(lost) and "reply never came" in res["error"]
        assert (tmp_path / "out" / "01_lost.failed.ipynb").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job's child inherits SIGINT ignored


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_and_sigterm_stop_book_run_cleanly(tmp_path, sig, code, word):
    """Ctrl-C reaches the whole process group (the terminal's way), SIGTERM only the command (a scheduler's): either
    way one line, the shell's exit code, no partial copies, no kernel left running."""
    src, out = tmp_path / "notebooks", tmp_path / "site"
    for name in ("01_first", "02_hangs", "03_hangs"):
        make_notebook(src, name, f"import os\nopen({str(tmp_path / name)!r}, 'w').write(str(os.getpid()))\n"
                                 + ("import time\ntime.sleep(10 ** 6)" if "hangs" in name else ""))
    p = subprocess.Popen([sys.executable, "-m", "tinygpt", "book", "run", "--preset", "smoke", "--jobs", "2",
                          "--notebooks-dir", str(src), "--out-dir", str(out), "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 240
        while not all((tmp_path / n).is_file() and (tmp_path / n).read_text() for n in ("02_hangs", "03_hangs")):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() else "too slow"
            time.sleep(0.2)
        kernels = [int((tmp_path / n).read_text()) for n in ("02_hangs", "03_hangs")]
        assert len(list(out.glob(".*.running.ipynb"))) == 2
        os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "running over TCP" not in line]
    assert len(lines) == 2 and lines[0].startswith("01_first: ok in ") and lines[1] == f"tinygpt book: {word}", stderr
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    deadline = time.monotonic() + 20  # init reaps the orphaned kernels
    while any(alive(pid) for pid in kernels) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in kernels)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_leftovers_of_a_killed_run_are_cleaned_before_the_next(tmp_path, own_results):
    """Partial copies, temporary files and lock-only run folders that no process holds go; a live one stays."""
    out = tmp_path / "site"
    out.mkdir()
    (out / ".01_baseline.ipynb.x1.running.ipynb").write_text("{}")
    run = own_results / "smoke" / "baseline" / "seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / ".ckpt.pt.x2.tmp").write_bytes(b"half a checkpoint")
    (own_results / "smoke" / "bad" / "seed0").mkdir(parents=True)
    (own_results / "smoke" / "bad" / "seed0" / ".lock").write_text("")
    hold = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tinygpt.files import folder_lock\n"
                             "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)",
                             str(own_results / "smoke" / "live" / "seed0")], stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline() == "held\n"
        later = time.time() + 1
        old = time.time() - 60
        for p in [out / ".01_baseline.ipynb.x1.running.ipynb", run / ".ckpt.pt.x2.tmp",
                  own_results / "smoke" / "bad" / "seed0" / ".lock", own_results / "smoke" / "bad" / "seed0"]:
            os.utime(p, (old, old))  # made before this process started
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("tinygpt.files.PROCESS_START", later)
            assert book.before_run("smoke", out) == 3
        assert not list(out.iterdir())
        assert sorted(p.name for p in run.iterdir()) == ["config.json"]
        assert sorted(p.name for p in (own_results / "smoke").iterdir()) == ["baseline", "live"]  # bad/ went
        assert (own_results / "smoke" / "live" / "seed0" / ".lock").exists()  # a live process holds it
    finally:
        hold.kill()
        hold.wait()


def test_the_run_log_records_the_presets_device(tmp_path, monkeypatch):
    """The smoke preset runs on the CPU even where CUDA is there: the log must say so."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Imaginary GPU")
    result = dict(notebook="01_a", status="ok", seconds=1.0, started_at="2026", error="", kernel="python3")
    log = json.loads(book.write_run_log([result], "smoke", out_dir=tmp_path).read_text())
    assert log["notebooks"]["01_a"]["device"].startswith("cpu (")
    log = json.loads(book.write_run_log([result], "gpu", out_dir=tmp_path).read_text())
    assert log["notebooks"]["01_a"]["device"] == "cuda (Imaginary GPU)"


def book_run(capsys, tmp_path, *argv):
    src = tmp_path / "notebooks"
    if not src.exists():
        make_notebook(src, "01_first", CHECK_PRESET)
    rc = cli.main(["book", "run", "--preset", "smoke", "--notebooks-dir", str(src), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()[-1]


def test_out_dir_that_is_a_file_or_unwritable(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    rc, line = book_run(capsys, tmp_path, "--out-dir", str(tmp_path / "file"))
    assert rc == 2 and line == f"tinygpt book: error: --out-dir {tmp_path / 'file'} is a file, not a folder: " \
                               "choose a folder path"
    rc, line = book_run(capsys, tmp_path, "--out-dir", str(tmp_path / "file" / "sub"))
    assert rc == 2 and line == f"tinygpt book: error: cannot write to --out-dir {tmp_path / 'file' / 'sub'} (a file " \
                               "is in the way): choose a folder you can write to"
    monkeypatch.setattr(book.os, "access", lambda *a: False)  # as a read-only file system answers (even root)
    rc, line = book_run(capsys, tmp_path, "--out-dir", str(tmp_path / "ro"))
    assert rc == 2 and line == f"tinygpt book: error: cannot write to --out-dir {tmp_path / 'ro'} (Permission " \
                               "denied): choose a folder you can write to"


def test_corrupt_results_stop_the_book_before_it_starts_naming_the_file(tmp_path, capsys, own_results):
    run = own_results / "smoke" / "baseline" / "seed1"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"best_val_loss": ')
    rc, line = book_run(capsys, tmp_path, "--out-dir", str(tmp_path / "site"))
    assert rc == 2 and line.startswith(f"tinygpt book: error: 1 corrupt run file(s): {run / 'metrics.json'} (not JSON:")
    assert line.endswith(f"Delete the run folder(s) ({run}): the book trains them again")
    assert not list((tmp_path / "site").glob("*.ipynb"))  # nothing ran


def test_results_folder_that_is_a_file_is_refused_at_once(tmp_path, capsys, monkeypatch):
    (tmp_path / "results.txt").write_text("x")
    monkeypatch.setenv("TINYGPT_RESULTS", str(tmp_path / "results.txt"))
    rc, line = book_run(capsys, tmp_path, "--out-dir", str(tmp_path / "site"))
    assert rc == 2 and line == f"tinygpt book: error: TINYGPT_RESULTS='{tmp_path / 'results.txt'}' is a file, not a " \
                               "folder: it sets the run store's folder (default: results/); fix it or unset it"
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("name, value, why", [
    ("TINYGPT_TORCH_THREADS", "abc", "must be a whole number ≥ 1"),
    ("TINYGPT_EXECUTOR", "bogus", "must be local or ray"),
    ("TINYGPT_GPUS_PER_RUN", "-1", "must be a number ≥ 0"),
    ("TINYGPT_RAY_CPUS", "0", "must be a whole number ≥ 1"),
])
def test_bad_environment_variables_are_named_where_the_command_starts(tmp_path, capsys, monkeypatch, name, value, why):
    monkeypatch.setenv(name, value)
    rc, line = book_run(capsys, tmp_path, "--out-dir", str(tmp_path / "site"))
    assert rc == 2 and line.startswith(f"tinygpt book: error: {name}={value!r} {why}: it sets ")
    assert line.endswith("; fix it or unset it")
    assert not (tmp_path / "site").exists()  # before anything ran


def test_cell_timeout_option(capsys, tmp_path):
    assert book.cell_timeout_of("smoke") == 900 and book.cell_timeout_of("cpu") == 12 * 3600
    assert book.cell_timeout_of("smoke", 30) == 30
    rc, line = book_run(capsys, tmp_path, "--cell-timeout", "0", "--out-dir", str(tmp_path / "site"))
    assert rc == 2 and line == "tinygpt book: error: --cell-timeout must be a number of seconds > 0 (got 0.0)"
