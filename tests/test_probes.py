"""tinygpt.book.probes: ridge R² on known relations, sequence-wise splits, probes on captures of tiny models."""

import numpy as np
import pytest
import torch

import tinygpt
from tinygpt.book.probes import (
    position_features,
    probe_spans,
    probe_structure,
    ridge_fit,
    ridge_r2,
    split_tokens,
)

STATS = ("mean_distance", "std_distance", "mean_logit")


def linear_data(n, p=8, noise=0.0, seed=0):
    """X (n, p) with unequal scales and offsets; y = X w with Var(Xw) = 1, plus noise of variance noise²."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.1, 10, p) + rng.normal(0, 5, p)
    w = rng.normal(size=p)
    signal = (X - X.mean(0)) @ w
    signal /= signal.std()
    return X, 3.0 + signal + noise * rng.normal(size=n)


def halves(X, y):
    n = len(X) // 2
    return X[:n], y[:n], X[n:], y[n:]


# ----------------------------------------------------------------------------- ridge_r2

def test_noiseless_linear_target_gives_r2_one():
    r2 = ridge_r2(*halves(*linear_data(2000)))
    assert r2.shape == (1,) and r2[0] > 0.999


def test_noisy_target_gives_the_theoretical_r2():
    # signal variance 1, noise variance 1: R² = 1 / (1 + 1)
    r2 = ridge_r2(*halves(*linear_data(20000, noise=1.0)))
    assert abs(r2[0] - 0.5) < 0.05


def test_several_targets_at_once_match_one_at_a_time():
    X, y1 = linear_data(1000, noise=0.5, seed=1)
    y2 = np.random.default_rng(2).normal(size=len(X))
    Y = np.stack([y1, y2, 2 * y1 - 7], axis=1)
    both = ridge_r2(*halves(X, Y))
    assert both.shape == (3,)
    for j in range(3):
        np.testing.assert_allclose(both[j], ridge_r2(*halves(X, Y[:, j]))[0], rtol=1e-10)
    assert abs(both[0] - both[2]) < 1e-8  # R² does not care about an affine change of the target


def test_independent_target_gives_r2_near_zero():
    X, _ = linear_data(4000, p=16)
    y = np.random.default_rng(5).normal(size=len(X))
    assert ridge_r2(*halves(X, y))[0] <= 0.05


def test_shuffled_control_of_a_real_relation_is_near_zero():
    X, y = linear_data(4000, noise=0.3)
    assert ridge_r2(*halves(X, y))[0] > 0.9
    y_shuffled = y[np.random.default_rng(0).permutation(len(y))]
    assert ridge_r2(*halves(X, y_shuffled))[0] <= 0.05


def test_alpha_grows_with_noise_and_intercept_is_unpenalised():
    X, y = linear_data(300, p=40, noise=0.0)
    _, alpha_clean = ridge_fit(X, y)
    _, alpha_noisy = ridge_fit(X, np.random.default_rng(0).normal(size=len(X)) * 10)
    assert alpha_clean[0] < alpha_noisy[0]
    # a constant target far from 0 is predicted exactly, even with the largest α
    predict, _ = ridge_fit(X, np.full(len(X), 1e3), alphas=(100.0,))
    np.testing.assert_allclose(predict(X), 1e3)


def test_constant_feature_is_harmless():
    X, y = linear_data(1000)
    X = np.hstack([X, np.ones((len(X), 1))])
    assert ridge_r2(*halves(X, y))[0] > 0.999


# ----------------------------------------------------------------------------- split_tokens

@pytest.mark.parametrize("seed", range(5))
def test_split_keeps_each_sequence_on_one_side(seed):
    B, T = 16, 24
    train, test = split_tokens(B * T, test_frac=0.25, seed=seed, group=T)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == B * T
    seq = np.arange(B * T) // T
    assert not set(seq[train]) & set(seq[test])
    assert len(set(seq[test])) == 4  # a quarter of the sequences, whole
    # explicit ids (not contiguous) give the same guarantee
    ids = np.random.default_rng(seed).integers(0, 10, size=300)
    train, test = split_tokens(300, seed=seed, group=ids)
    assert not set(ids[train]) & set(ids[test]) and len(train) and len(test)


def test_split_without_groups_is_by_token_and_deterministic():
    a = split_tokens(100, seed=3)
    b = split_tokens(100, seed=3)
    assert len(a[1]) == 25
    np.testing.assert_array_equal(a[1], b[1])


# ----------------------------------------------------------------------------- probes on captures

def tiny_capture(variant="baseline", seed=0):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = tinygpt.GPT(tinygpt.GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=65,
                                          variant=variant))
    idx = torch.randint(0, 65, (16, 32), generator=torch.Generator().manual_seed(0))
    return tinygpt.capture(model, idx)


@pytest.fixture(scope="module")
def cap():
    return tiny_capture()


@pytest.fixture(scope="module")
def cap_window():
    return tiny_capture("soft_window", seed=1)


def test_probe_structure_has_one_finite_row_per_layer_head_stat(cap):
    df = probe_structure(cap)
    assert list(df.columns) == ["layer", "head", "stat", "r2"]
    assert len(df) == 2 * 2 * 3
    expected = {(layer, h, s) for layer in range(2) for h in range(2) for s in STATS}
    assert set(zip(df["layer"], df["head"], df["stat"])) == expected
    assert np.isfinite(df.r2).all() and (df.r2 <= 1).all()


def test_shuffled_structure_control_is_below_the_real_probe(cap):
    real = probe_structure(cap, min_pos=2)
    shuffled = probe_structure(cap, min_pos=2, shuffle=True)
    assert shuffled.r2.mean() <= real.r2.mean()
    assert shuffled.r2.mean() < 0.1


def test_probe_structure_with_a_separate_target_capture(cap, cap_window):
    df = probe_structure(cap, cap_window, stats=("mean_logit",), min_pos=4)
    assert len(df) == 4 and set(df.stat) == {"mean_logit"} and np.isfinite(df.r2).all()


def test_position_only_features(cap):
    np.testing.assert_array_equal(position_features(2, 4, min_pos=1), np.tile(np.eye(3), (2, 1)))
    pos = probe_structure(cap, features="position")
    assert len(pos) == 12 and np.isfinite(pos.r2).all()
    # at initialisation attention is nearly uniform: the mean distance is about t/2, all position
    md = pos[pos.stat == "mean_distance"].r2
    assert (md > 0.95).all()
    both = probe_structure(cap, features="resid+position")
    assert both.r2.mean() >= pos.r2.mean() - 0.05
    with pytest.raises(ValueError, match="features"):
        probe_structure(cap, features="tokens")


def test_probe_spans_with_a_soft_window_model(cap, cap_window):
    df = probe_spans(cap, cap_window)
    assert list(df.columns) == ["layer", "head", "r2"] and len(df) == 4
    assert np.isfinite(df.r2).all()
    # the window model's own residual stream predicts its (linear-in-the-stream) log-span almost exactly
    own = probe_spans(cap_window, cap_window)
    assert (own.r2 > 0.9).all()
    shuffled = probe_spans(cap_window, cap_window, shuffle=True)
    assert shuffled.r2.mean() < 0.1
    assert len(probe_spans(cap, cap_window, features="position", min_pos=3)) == 4


def test_probe_spans_needs_a_window_model(cap):
    with pytest.raises(ValueError, match="span"):
        probe_spans(cap, cap)
