"""The book's widgets, driven as a reader drives them: the sampling box's seed and prompt."""

import re

import pytest

import tinygpt

pytest.importorskip("ipywidgets")
from tinygpt.book import widgets  # noqa: E402

ITOS = list("\nABCDEFGHIJKLMNOPQRSTUVWXYZ :")


@pytest.fixture(scope="module")
def model():
    cfg = tinygpt.GPTConfig(block_size=16, vocab_size=len(ITOS), n_layer=1, n_head=2, n_embd=16)
    return tinygpt.GPT(cfg).eval()


def samples(text):
    """(seed, the sample's first 46 characters: prompt and 40 drawn) for every sample printed."""
    parts = re.split(r"seed (\d+):\n", text)
    return [(seed, body[:46]) for seed, body in zip(parts[1::2], parts[2::2])]


def test_each_click_draws_a_new_seed_and_says_which(model, capsys):
    box = widgets.sampling_box(model, ITOS, prompt="ROMEO:", max_new_tokens=40, seed=0)
    box["button"].click()
    box["button"].click()
    drawn = samples(capsys.readouterr().out)
    assert [s for s, _ in drawn][0] == "0" and len(drawn) == 3  # the static sample says its seed too
    (s1, t1), (s2, t2) = drawn[1:]
    assert s1 != s2 and t1 != t2 and str(box["seed"].value) == s2  # the box shows the seed last used


def test_keep_seed_repeats_the_sample_and_the_prompt_is_read_at_the_press(model, capsys):
    box = widgets.sampling_box(model, ITOS, prompt="ROMEO:", max_new_tokens=40, seed=0)
    box["keep"].value, box["seed"].value = True, 1234
    box["button"].click()
    box["prompt"].value = "JULIET:"  # what a blur syncs just before the click reaches the kernel
    box["button"].click()
    box["prompt"].value = "JULIET:"
    box["button"].click()
    (_, _), (s1, t1), (s2, t2), (s3, t3) = samples(capsys.readouterr().out)
    assert s1 == s2 == s3 == "1234"
    assert t1.startswith("ROMEO:") and t2.startswith("JULIET:") and t2 == t3
    assert not box["prompt"].continuous_update  # synced on blur, which the press causes before its click
