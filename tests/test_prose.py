"""The chapters' result sentences, rendered from the stored cpu-preset results (results/cpu/), say what the
numbers say: "largest", "better", "shrinks", "deficit" only where the numbers bear them out."""

import re
from pathlib import Path

import pandas as pd
import pytest

from tinygpt.book import prose, study
from tinygpt.book.regime import gap_over_training
from tinygpt.book.results import compare, load_histories, load_runs

ROOT = Path(__file__).resolve().parents[1]
CPU = ROOT / "results" / "cpu"
needs_results = pytest.mark.skipif(not (CPU / "summary.json").exists(), reason="no stored cpu results")


@pytest.fixture(scope="module")
def cpu_runs():
    return load_runs("cpu", ROOT / "results")


@needs_results
def test_chapter5_summary_says_largest_only_beyond_noise(cpu_runs):
    planned = study.chapter_runs("05_network_shape", dict(preset="cpu", n_seeds=5, both_ways=False))
    knob_of = {r.tag: next(iter(r.overrides.items())) for r in planned if r.name != "baseline"}
    table = cpu_runs[cpu_runs.tag.isin(["baseline", *knob_of])]
    runs, bl = prose.shape_table(table, knob_of, 5)
    base = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "block_size": 64}
    text = prose.shape_summary(runs, bl, base, "cpu")
    print(text)
    # n_embd=64 is +8 std from the baseline: the knob that moved the loss most, named as such
    top = runs.loc[runs.z.abs().idxmax()]
    assert abs(top.z) > prose.Z_NOISE and f"moved the best validation loss most is **{top.knob}**" in text
    # the widest train/val gap among the shapes (n_layer=6, +0.115) is below the baseline's own (+0.136): not "largest"
    gap_z = (runs.gap.max() - bl.gap.mean()) / bl.gap.std(ddof=1)
    assert gap_z < prose.Z_NOISE
    assert "largest gap" not in text and "no changed shape ends with a wider gap" in text
    # no shape beats the baseline beyond noise, so the lowest loss is not called better
    assert runs.z.min() > -prose.Z_NOISE and "no changed shape beats the baseline" in text
    assert "wider network" not in text and "two changed runs" not in text
    # every number quoted for a shape matches the table
    for r in runs.itertuples():
        for m in re.finditer(rf"{re.escape(r.tag)} \(([+-]\d\.\d+), ([+-]\d+\.\d) std\)", text):
            assert float(m.group(1)) == pytest.approx(r.diff, abs=5e-4)
            assert float(m.group(2)) == pytest.approx(r.z, abs=0.05)


@needs_results
@pytest.mark.parametrize("tags", [["soft_window", "hard_window", "alibi", "key_importance", "learned_span"],
                                  ["structure_gate", "output_gate"],
                                  ["structure_mlp", "structure_embedding", "structure_mlp_prenorm"]])
def test_gap_over_training_paragraph_follows_the_histories(tags, cpu_runs):
    """Variants whose difference moves alike share a sentence; each sentence's words follow each member's numbers."""
    paths = cpu_runs[cpu_runs.tag.isin(["baseline", *tags])].path
    gap = gap_over_training(load_histories(paths))
    text = prose.gap_paragraph(gap)
    print(text)
    sentences = [x for x in re.split(r"(?<=\.) (?=For )", text) if x]
    assert len(sentences) == len({(prose.gap_trend(prose.gap_at(gap, t, 500), gap[gap.tag == t].iloc[-1]),
                                   prose._side(gap[gap.tag == t].iloc[-1])) for t in tags})  # one per group
    clear = lambda r: r.hi < 0 or r.lo > 0  # noqa: E731
    for tag in tags:
        sentence = next(x for x in sentences if f"**{tag}**" in x)
        early, end = prose.gap_at(gap, tag, 500), gap[gap.tag == tag].iloc[-1]
        assert f"{early['diff']:+.3f}" in sentence and f"{end['diff']:+.3f}" in sentence
        shrinks = clear(early) and clear(end) and early["diff"] * end["diff"] > 0 and \
            abs(end["diff"]) < 0.8 * abs(early["diff"])
        assert ("shrinks" in sentence) == shrinks, f"{tag}: {early['diff']:+.3f} → {end['diff']:+.3f}"
        assert ("opens up" in sentence) == (not clear(early) and clear(end))
        assert ("below zero" in sentence) == (end.hi < 0) and ("above zero" in sentence) == (end.lo > 0)
    assert text.count("For ") == len(sentences)  # no paragraph says the same thing twice


@needs_results
def test_the_verdicts_follow_the_rule_and_the_tables_show_them(cpu_runs):
    table = compare(cpu_runs[~cpu_runs.tag.str.contains(r"\+|shape-")])
    for r in table.dropna(subset=["diff"]).itertuples():
        if r.verdict in ("better", "worse"):
            assert table.loc[r.Index, "p (Holm)"] < 0.05
            assert (r.ci_hi < 0) if r.verdict == "better" else (r.ci_lo > 0)
        if r.verdict == "matches":
            assert r.ci_lo <= 0 <= r.ci_hi and r.ci_hi - r.ci_lo < 0.05
    row = table.set_index("tag").loc["structure_mlp"]
    assert ("deficit for the placement" in prose.placement_line(table)) == (row.verdict != "worse")
    shown = prose.comparison_table(table)
    assert not shown.astype(str).apply(lambda c: c.str.contains("nan", case=False)).any().any()
    assert shown.loc["baseline", "difference [95%]"] == "—" and len(shown.columns) <= 5  # fits 800 px


def test_span_and_gate_words():
    # issue 15: 1.6 → 1.8 tokens is not "longer"
    assert "about as long in the last layer" in prose.span_line("soft_window", [1.6, 1.7, 1.8], 3)
    assert "shorter in the last layer" in prose.span_line("hard_window", [30.0, 10.0, 4.0], 3)
    assert "longer in the last layer" in prose.span_line("hard_window", [4.0, 10.0, 30.0], 3)
    less = prose.gate_correlation_line(pd.Series({"structure_gate": 0.13, "output_gate": 0.28}))
    assert "*less* than the output gate" in less
    more = prose.gate_correlation_line(pd.Series({"structure_gate": 0.40, "output_gate": 0.28}))
    assert "less" not in more and "more than the output gate" in more


def test_signal_sizes_compare_changes_with_changes():
    sig = pd.DataFrame({"layer": [0, 1], "attention output": [1.0, 2.0], "gate change": [0.1, 0.2],
                        "f_bias": [0.3, 0.6], "f_loc": [0.05, 0.1]})
    line = prose.signal_line(sig)
    assert "gate change 0.10×" in line and "f_bias 0.30×" in line and "The largest, f_bias, is comparable" in line


def _minus(x):
    return float(x.replace("−", "-"))


@needs_results
def test_the_landing_page_quotes_the_stored_results():
    """book/intro.md quotes results by hand: every number in its tables must match the stored results to the digits
    shown, and every verdict the verdict stored; its prose's headline numbers too."""
    import json
    s = json.loads((CPU / "summary.json").read_text())
    cpu = {r["tag"]: r for r in s["table"]}
    gpu, final = {r["tag"]: r for r in s["gpu"]["table"]}, {r["tag"]: r for r in s["gpu"]["final"]}
    intro = (ROOT / "book" / "intro.md").read_text()
    rows = re.findall(r"^\| (\w+)(?: \(control\))? \| [^|]+ \| ([−+][\d.]+) \| (\w+) \|$", intro, re.M)
    assert len(rows) == len(cpu) - 1
    for tag, diff, verdict in rows:
        assert _minus(diff) == pytest.approx(cpu[tag]["diff"], abs=5e-4) and verdict == cpu[tag]["verdict"], tag
    gpu_rows = re.findall(r"^\| (\w+) \| ([\d.]+) ± ([\d.]+) \| ([−+][\d.]+) \[([−+][\d.]+), ([−+][\d.]+)\] \| (\w+) "
                          r"\| ([−+][\d.]+) \[([−+][\d.]+), ([−+][\d.]+)\] \| (\w+) \|$", intro, re.M)
    assert {r[0] for r in gpu_rows} == set(gpu) - {"baseline"}
    for tag, mean, std, d, lo, hi, v, fd, flo, fhi, fv in gpu_rows:
        g, f = gpu[tag], final[tag]
        assert [float(mean), float(std)] == pytest.approx([g["mean"], g["std"]], abs=5e-5)
        assert [_minus(d), _minus(lo), _minus(hi)] == pytest.approx([g["diff"], g["ci_lo"], g["ci_hi"]], abs=5e-5)
        assert [_minus(fd), _minus(flo), _minus(fhi)] == pytest.approx([f["diff"], f["ci_lo"], f["ci_hi"]], abs=5e-4)
        assert v == g["verdict"] and fv == f["verdict"]
    side = re.findall(r"^\| (\w+)(?:'s best val loss| \(control\))? \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", intro, re.M)
    for tag, at_gpu, at_cpu in side:
        for quoted, table in ((at_gpu, gpu), (at_cpu, cpu)):
            m = re.match(r" ?([\d.]+) ± ([\d.]+)(?: \(([−+][\d.]+)\))?", quoted)
            if m and tag in table:
                r = table[tag]
                digits = len(m.group(1).split(".")[1])
                assert float(m.group(1)) == pytest.approx(r["mean"], abs=0.51 * 10 ** -digits), tag
                if m.group(3):
                    assert _minus(m.group(3)) == pytest.approx(r["diff"], abs=0.51 * 10 ** -digits), tag
    closed = {r["closed_at"] for r in s["gpu"]["head_start"]}
    assert f"by iteration {max(closed):,}" in intro
    bound = max(-gpu[t]["ci_lo"] for t in gpu if t != "baseline")
    assert f"larger than {bound:.3f} nats" in intro
    within = max(abs(gpu[t]["diff"]) for t in gpu if t != "baseline")
    assert f"within {within:.3f} nats" in intro or f"within {within + 5e-4:.3f} nats" in intro


@needs_results
def test_the_readme_opening_quotes_the_stored_results():
    import json
    s = json.loads((CPU / "summary.json").read_text())
    head = (ROOT / "README.md").read_text().split("## What it found")[0]
    gpu = [r for r in s["gpu"]["table"] if r["tag"] != "baseline"]
    assert f"within {max(abs(r['diff']) for r in gpu):.3f} nats" in head
    assert f"by iteration {max(r['closed_at'] for r in s['gpu']['head_start']):,}" in head
    assert all(r["verdict"] == "worse" for r in s["gpu"]["final"] if r["tag"] != "baseline")  # "they are worse"
    better = {r["tag"] for r in s["table"] if r["verdict"] == "better"}
    assert better == {"soft_window", "hard_window", "alibi"}  # the opening names exactly these as better


@needs_results
def test_the_conclusions_hold_and_render_from_the_stored_results():
    """Every judgement the written conclusions make holds for the stored results, and every section renders."""
    import json

    from tinygpt.book import conclusions
    f = conclusions.facts(json.loads((CPU / "summary.json").read_text()))
    assert conclusions.failed_claims(f) == []
    for name in conclusions.TEXT:
        text = conclusions.render(name, f)
        assert "{" not in text.replace("{doc}", "")


@needs_results
def test_a_failed_claim_stops_the_conclusions_page():
    """Results that no longer bear out a written sentence (here: a variant better at the gpu scale) stop the page."""
    import json

    from tinygpt.book import conclusions
    s = json.loads((CPU / "summary.json").read_text())
    s["gpu"]["table"][1]["verdict"] = "better"
    f = conclusions.facts(s)
    assert conclusions.failed_claims(f) == ["at the gpu scale no measured variant is better or worse at its best "
                                            "checkpoint"]
    with pytest.raises(ValueError, match="no longer bear out: at the gpu scale no measured variant"):
        conclusions.render("reproduced", f)


@needs_results
def test_original_beside_ours_reads_the_stored_numbers():
    import json

    import tinygpt
    s = json.loads((CPU / "summary.json").read_text())
    cpu, gpu = pd.DataFrame(s["table"]), pd.DataFrame(s["gpu"]["table"])
    md = prose.original_vs_ours({"gpu": (tinygpt.make_config("gpu"), gpu), "cpu": (tinygpt.make_config("cpu"), cpu)})
    print(md)
    assert "| context | 256 characters | 256 characters | 64 characters |" in md
    for tag, t in (("structure_gate", cpu), ("soft_window", gpu)):  # the stored numbers, as the table prints them
        r = t.set_index("tag").loc[tag]
        assert f"{r['mean']:.3f} ± {r['std']:.3f} ({r['diff']:+.3f}, {r['verdict']})".replace("-", "−") in md
    assert "| hard_window | \"similar\" to the baseline | not measured yet |" in md
