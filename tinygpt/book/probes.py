"""Linear probes: how much of an attention variant's explicit information is already in the residual stream.

The hypothesis: the residual stream entering layer l already carries, implicitly, what a variant
computes inside layer l and injects (the attention structure of that layer, a window's span). We fit
ridge regressions from the baseline's residual stream to those quantities and report R² on held-out
sequences:

    cap = tinygpt.capture(baseline, idx)
    probe_structure(cap)                          # rows (layer, head, stat, r2)
    probe_structure(cap, features="position")     # the position-only control
    probe_structure(cap, shuffle=True)            # the shuffled-target control: R² ≈ 0 or below
    probe_spans(cap, tinygpt.capture(soft_window_model, idx))   # rows (layer, head, r2)

Two controls frame the numbers. Shuffling the targets across tokens breaks any relation, so its R²
(≈ 0, slightly negative) is the floor an over-fitting probe would reach. Position alone is the other
reference: distance statistics depend strongly on where the query is (a query at position 3 cannot
look back 20 tokens, and causal attention near the start is short by construction), and the residual
stream contains the position embedding; so a high R² from the residual stream says little unless it
beats what the query position alone explains. features="position" uses a one-hot of the query
position, i.e. the best any function of position can do linearly (the per-position mean of the target).

Everything is numpy float64; no sklearn.
"""

import numpy as np
import pandas as pd

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
STATS = ("mean_distance", "std_distance", "mean_logit")


# ----------------------------------------------------------------------------- splits and ridge

def split_tokens(n_tokens, test_frac=0.25, seed=0, group=None):
    """(train, test) index arrays over n_tokens rows, splitting whole groups (sequences), not tokens.

    group: an array (n_tokens,) of sequence ids; or an int, the number of consecutive rows per
    sequence (the B×T' flattening of a capture); or None, every row its own group (i.i.d. data).

    Why whole sequences: positions in one window are strongly correlated (the residual stream at t
    and t+1 has seen almost the same prefix, and their attention structure is nearly the same), so a
    random token split would put near-copies of the test tokens in the training set and report how
    well the probe interpolates within a sequence rather than how well it generalises to new text.
    """
    if group is None:
        group = np.arange(n_tokens)
    elif np.isscalar(group):
        group = np.arange(n_tokens) // int(group)
    group = np.asarray(group)
    if group.shape != (n_tokens,):
        raise ValueError(f"group must have one entry per token ({n_tokens}), got shape {group.shape}")
    ids = np.unique(group)
    if len(ids) < 2:
        raise ValueError("split_tokens needs at least two groups (sequences)")
    n_test = min(max(1, int(round(test_frac * len(ids)))), len(ids) - 1)
    test_ids = np.random.default_rng(seed).choice(ids, size=n_test, replace=False)
    is_test = np.isin(group, test_ids)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _design(X, mean, std):
    """Standardised features with a leading intercept column."""
    Z = (np.asarray(X, dtype=np.float64) - mean) / std
    return np.hstack([np.ones((len(Z), 1)), Z])


def _ridge_weights(A, Y, alpha):
    """Solve (AᵀA + αD)W = AᵀY with D = I except 0 for the intercept (column 0): it is not penalised."""
    D = np.eye(A.shape[1])
    D[0, 0] = 0.0
    return np.linalg.solve(A.T @ A + alpha * D, A.T @ Y)


def r2_score(Y, P):
    """R² per column, 1 − SS_res/SS_tot with the mean of Y itself (nan for a constant column)."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    ss_res = ((Y - P) ** 2).sum(0)
    ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def ridge_fit(X, Y, alphas=ALPHAS, group=None, val_frac=0.2, seed=0):
    """Fit ridge for every column of Y at once; returns (predict, alpha per column).

    X is standardised with its own (training) mean and std and gets an unpenalised intercept. α is
    chosen per target column by a validation split carved from the training rows (by group when
    given, for the reason in split_tokens): fit on the rest for every α, keep the α with the lowest
    validation error, then refit on all training rows. A validation split rather than generalised
    cross-validation because GCV approximates leave-one-token-out, which correlated neighbouring
    tokens would make optimistic (too small an α).
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    squeeze = Y.ndim == 1
    Y = Y[:, None] if squeeze else Y
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays 0 after centring
    A = _design(X, mean, std)

    fit, val = split_tokens(len(X), val_frac, seed, group)
    val_err = np.stack([((A[val] @ _ridge_weights(A[fit], Y[fit], a) - Y[val]) ** 2).mean(0) for a in alphas])
    best = val_err.argmin(0)  # (n_targets,) index into alphas

    W = np.zeros((A.shape[1], Y.shape[1]))
    for i, a in enumerate(alphas):
        cols = best == i
        if cols.any():
            W[:, cols] = _ridge_weights(A, Y[:, cols], a)

    def predict(X_new):
        P = _design(X_new, mean, std) @ W
        return P[:, 0] if squeeze else P

    return predict, np.asarray(alphas, dtype=np.float64)[best]


def ridge_r2(X_train, Y_train, X_test, Y_test, alphas=ALPHAS, group_train=None, seed=0):
    """Held-out R² per target column of a ridge probe fitted on the training rows (see ridge_fit).

    group_train: sequence ids of the training rows, so that the validation split choosing α also
    keeps sequences whole; None splits the training rows at random.
    R² uses the test mean: 0 is "no better than the test set's own average", negative is worse.
    """
    Y_train, Y_test = np.asarray(Y_train, dtype=np.float64), np.asarray(Y_test, dtype=np.float64)
    if Y_train.ndim == 1:  # one target: still one R² per column, shape (1,)
        Y_train, Y_test = Y_train[:, None], Y_test[:, None]
    predict, _ = ridge_fit(X_train, Y_train, alphas, group=group_train, seed=seed)
    return r2_score(Y_test, predict(X_test))


# ----------------------------------------------------------------------------- probes on captures

def _resid_rows(resid, min_pos):
    r = resid[:, min_pos:, :].detach().double().cpu().numpy()  # (B, T', C)
    return r.reshape(-1, r.shape[-1])


def _head_rows(field, min_pos):
    f = field[:, :, min_pos:].detach().double().cpu().numpy()  # (B, H, T')
    return f.transpose(0, 2, 1).reshape(-1, f.shape[1])  # (B·T', H), same row order as _resid_rows


def position_features(B, T, min_pos=0):
    """One-hot of the query position t ∈ [min_pos, T) for each of the B·T' rows (any function of position)."""
    return np.tile(np.eye(T - min_pos), (B, 1))


def token_features(idx, vocab_size, min_pos=0):
    """One-hot of the token at each query position ≥ min_pos: what a model knows with no context at all."""
    t = np.asarray(idx)[:, min_pos:].reshape(-1)
    return np.eye(vocab_size)[t]


def _features(cap, layer, features, min_pos):
    B, T, _ = cap.resid[layer].shape
    if features == "token+position":  # the control the stream must beat: no mixing between positions
        if cap.idx is None:
            raise ValueError("features='token+position' needs a capture that kept its tokens (cap.idx)")
        return np.hstack([token_features(cap.idx.cpu(), cap.logits.shape[-1], min_pos),
                          position_features(B, T, min_pos)])
    if features == "resid":
        return _resid_rows(cap.resid[layer], min_pos)
    if features == "position":
        return position_features(B, T, min_pos)
    if features == "resid+position":
        return np.hstack([_resid_rows(cap.resid[layer], min_pos), position_features(B, T, min_pos)])
    raise ValueError(f"features must be 'resid', 'position', 'resid+position' or 'token+position' (got {features!r})")


def _probe(X, Y, B, shuffle, seed):
    """Held-out R² of every column of Y; rows are B sequences of equal length, split whole."""
    group = np.repeat(np.arange(B), len(X) // B)
    train, test = split_tokens(len(X), seed=seed, group=group)
    if shuffle:  # the control: same features, same split, targets moved to random other tokens
        Y = Y[np.random.default_rng(seed + 1).permutation(len(Y))]
    return ridge_r2(X[train], Y[train], X[test], Y[test], group_train=group[train], seed=seed)


def probe_structure(cap_source, cap_target=None, stats=STATS, min_pos=0, shuffle=False, seed=0, features="resid"):
    """R² of probes predicting layer l's attention structure from the residual stream entering layer l.

    Features: cap_source.resid[l] at query positions ≥ min_pos (B·T' tokens × C), or with
    features="position" a one-hot of the query position only (the control the residual stream must
    beat), or "resid+position" both. Targets: cap_target.layers[l].stats[stat] (default
    cap_target = cap_source) for every head. Held-out tokens are whole sequences (split_tokens).
    shuffle=True permutes the targets across tokens (same split): expect R² ≈ 0 or below.
    Returns a DataFrame with columns layer, head, stat, r2.
    """
    cap_target = cap_source if cap_target is None else cap_target
    rows = []
    for layer, lc in enumerate(cap_target.layers):
        B = cap_source.resid[layer].shape[0]
        X = _features(cap_source, layer, features, min_pos)
        Y = np.hstack([_head_rows(lc.stats[s], min_pos) for s in stats])  # (N, S·H), stat-major
        H = lc.stats[stats[0]].shape[1]
        r2 = _probe(X, Y, B, shuffle, seed)
        rows += [dict(layer=layer, head=h, stat=s, r2=float(r2[i * H + h]))
                 for i, s in enumerate(stats) for h in range(H)]
    return pd.DataFrame(rows, columns=["layer", "head", "stat", "r2"])


def probe_spans(cap_source, cap_window, min_pos=0, shuffle=False, seed=0, features="resid"):
    """R² of probes predicting a window model's log-span per head from the baseline's residual stream.

    cap_window: capture of a soft_window / hard_window model on the same tokens as cap_source.
    Targets: log cap_window.layers[l].span (log because spans are exp-parameterised: σ = 1 + s·L·eᵃ).
    A per-head constant span (learned_span) gives R² = nan. Returns columns layer, head, r2.
    """
    if tuple(cap_window.logits.shape[:2]) != tuple(cap_source.logits.shape[:2]):
        raise ValueError("cap_source and cap_window must be captures of the same tokens")
    rows = []
    for layer, lc in enumerate(cap_window.layers):
        if lc.span is None:
            raise ValueError(f"cap_window layer {layer} has no span: capture a window variant")
        B = cap_source.resid[layer].shape[0]
        X = _features(cap_source, layer, features, min_pos)
        Y = np.log(_head_rows(lc.span, min_pos))
        r2 = _probe(X, Y, B, shuffle, seed)
        rows += [dict(layer=layer, head=h, r2=float(v)) for h, v in enumerate(r2)]
    return pd.DataFrame(rows, columns=["layer", "head", "r2"])


FEATURES = ("resid", "resid+position", "position", "token+position")  # what a probe reads, besides the controls


def probe_table(cap_base, cap_random, window_caps):
    """Chapter 6's probes in one long table: (target, stat, features, layer, head, r2, …).

    The structure and each window model's log spans, from the baseline's stream (FEATURES), from an untrained
    model's stream with position ("random init") and against shuffled targets ("shuffled").
    """
    import pandas as pd

    rows = [probe_structure(cap_base, features=f).assign(target="structure", features=f) for f in FEATURES]
    rows.append(probe_structure(cap_random, cap_base, features="resid+position")
                .assign(target="structure", features="random init"))
    rows.append(probe_structure(cap_base, shuffle=True).assign(target="structure", features="shuffled"))
    for tag, cap in window_caps.items():
        span = dict(target=f"{tag} span", stat="log span")
        rows += [probe_spans(cap_base, cap, features=f).assign(features=f, **span) for f in FEATURES]
        rows.append(probe_spans(cap_random, cap, features="resid+position").assign(features="random init", **span))
        rows.append(probe_spans(cap_base, cap, shuffle=True).assign(features="shuffled", **span))
    return pd.concat(rows, ignore_index=True)
