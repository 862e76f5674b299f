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
@pytest.mark.parametrize("chapter, tags", [("02", ["soft_window", "hard_window", "alibi"]),
                                           ("03", ["structure_gate", "output_gate"]),
                                           ("04", ["structure_mlp", "structure_embedding", "structure_mlp_prenorm"])])
def test_gap_over_training_paragraph_follows_the_histories(chapter, tags, cpu_runs):
    paths = cpu_runs[cpu_runs.tag.isin(["baseline", *tags])].path
    gap = gap_over_training(load_histories(paths))
    text = prose.gap_paragraph(gap)
    print(text)
    for tag in tags:
        g = gap[gap.tag == tag]
        early, end = prose.gap_at(gap, tag, 500), g.iloc[-1]
        assert f"{early['diff']:+.3f}" in text and f"{end['diff']:+.3f}" in text
        sentence = text[text.index(f"**{tag}**"):].split("**", 3)[2]
        clear = lambda r: r.hi < 0 or r.lo > 0  # noqa: E731
        shrinks = (clear(early) and clear(end) and early["diff"] * end["diff"] > 0
                   and abs(end["diff"]) < 0.8 * abs(early["diff"]))
        assert ("shrinks" in sentence) == shrinks, f"{tag}: {early['diff']:+.3f} → {end['diff']:+.3f}"
        assert ("opens up" in sentence) == (not clear(early) and clear(end))
        assert ("below zero" in sentence) == (end.hi < 0)
        assert ("above zero" in sentence) == (end.lo > 0)
    if chapter == "02":  # issue 10's table: soft_window −0.217 at 500, −0.117 at 2,000
        assert "**soft_window**: -0.217" in text and "shrinks" in text
    if chapter == "03":  # structure_gate: no difference at 500, worse from 1,000 on
        assert "opens up" in text[text.index("**structure_gate**"):]


@needs_results
def test_effect_words_follow_the_verdicts(cpu_runs):
    table = compare(cpu_runs[~cpu_runs.tag.str.contains(r"\+|shape-")])
    for r in table.dropna(subset=["diff"]).itertuples():
        word = prose.signed_effect(r.diff, r.verdict)
        if word == "deficit":
            assert r.ci_lo > 0
        if word == "advantage":
            assert r.ci_hi < 0
    # structure_mlp is −0.0076 from the baseline: no deficit (issue 15)
    row = table.set_index("tag").loc["structure_mlp"]
    assert prose.signed_effect(row["diff"], row.verdict) != "deficit"
    assert "deficit for the placement" in prose.placement_line(table)
    shown = prose.comparison_table(table)
    assert not shown.astype(str).apply(lambda c: c.str.contains("nan", case=False)).any().any()
    assert shown.set_index("tag").loc["baseline", "diff"] == "—"


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


@needs_results
def test_the_landing_page_quotes_the_stored_results():
    """book/intro.md quotes results/cpu/summary.json by hand: every 'mean ± std (diff)' and every difference in its
    tables must match it to the digits shown."""
    import json
    summary = {r["tag"]: r for r in json.loads((CPU / "summary.json").read_text())["table"]}
    intro = (ROOT / "book" / "intro.md").read_text()
    minus = lambda s: float(s.replace("−", "-"))  # noqa: E731
    quoted = re.findall(r"^\| (\w+)(?:'s best val loss)? \|.*\| ([\d.]+) ± ([\d.]+)(?: \(([−+][\d.]+)\))? \|$", intro,
                        re.M)
    assert len(quoted) >= 7 and quoted[0][0] == "baseline"
    for tag, mean, std, diff in quoted:
        r = summary[tag]
        assert float(mean) == pytest.approx(r["mean"], abs=5e-4) and float(std) == pytest.approx(r["std"], abs=5e-4)
        if diff:
            assert minus(diff) == pytest.approx(r["diff"], abs=5e-4), tag
    for tag, diff, verdict in re.findall(r"^\| (\w+)(?: \(control\))? \| [^|]+ \| ([−+][\d.]+) \| (\w+) \|$", intro,
                                         re.M):
        assert minus(diff) == pytest.approx(summary[tag]["diff"], abs=5e-4) and verdict == summary[tag]["verdict"]


@needs_results
def test_original_beside_ours_reads_the_stored_numbers():
    import json

    import tinygpt
    table = pd.DataFrame(json.loads((CPU / "summary.json").read_text())["table"])
    md = prose.original_vs_ours(table, tinygpt.make_config("cpu"), 5, 3)
    print(md)
    assert "| context | 256 characters | 64 characters |" in md
    assert "≈ 82 M tokens | 2,000 iterations × 768 tokens ≈ 1.5 M tokens |" in md
    assert "| soft_window | 1.4571 (after 1,500 iterations, then over-fits) | 1.802 ± 0.013 (−0.115, better) |" in md
    g = table.set_index("tag").loc["structure_gate"]  # the stored numbers, as the table must print them
    assert (f"| structure_gate | no better, no worse | {g['mean']:.3f} ± {g['std']:.3f} "
            f"({g['diff']:+.3f}, {g['verdict']}) |").replace("-", "−") in md
