"""Which kernel computes a variant's attention: chosen here, and only here, from its pieces and the inputs.

    piece (variants.PIECES)     CPU                                      CUDA
    capture (analysis)          explicit: scores and weights materialised, the offset dense
    none, gates                 fused: SDPA's flash kernel               the same
    offset soft / iota          fused, the offset as extra q/k channels  the same, head size padded to 8
    offset alibi                fused, a mask up to 256 tokens, else     fused, channels (a mask rules out
                                channels                                 the flash kernel)
    offset ramp (hard window)   dense with a hand-written backward;      FlexAttention, block-sparse; with
                                with dropout, fused with a dense offset  dropout in two passes (no T×T grad)
    stats all (structure_gate)  dense by hand up to 256 tokens without   fused, the structure as extra value
                                dropout, else as on CUDA                 channels, padded to 8
    stats positions             fused, extra value channels              the same, padded to 8

Every CPU choice is the one the committed cpu-preset runs were trained with (tests/test_cpu_reproducible.py).
"""

from dataclasses import dataclass

from . import variants as V
from .attention import (
    DENSE_STRUCTURE_MAX_T,
    attend_dense_structure,
    attend_explicit,
    attend_flex_window,
    attend_fused,
    attend_hard_window,
)

ALIBI_MASK_MAX_T = 256  # alibi on CPU: a (1, H, T, T) mask up to this context, q/k channels beyond
CUDA_ALIGN = 8  # CUDA's flash and memory-efficient kernels take head sizes that are multiples of 8


@dataclass(frozen=True)
class Attend:
    """A variant's attention: causal softmax(q·kᵀ/√D + offset) @ v and, if asked, its structure."""

    offset_kind: str | None
    stats: str | None
    n_head: int
    block_size: int
    block_sparse: bool

    @classmethod
    def from_config(cls, config):
        p = V.pieces(config)
        return cls(p.offset, p.stats, config.n_head, config.block_size, config.block_sparse)

    def offset(self, span, iota, T, device):
        """The sum of the variant's logit offsets, (B|1, H|1, T, T), or None for plain causal attention."""
        if self.offset_kind in ("soft", "ramp", "alibi"):
            d = V.distances(T, device)
            if self.offset_kind == "alibi":
                return V.alibi_offset(self.n_head, d)
            return (V.soft_window_offset if self.offset_kind == "soft" else V.ramp_offset)(span, d)
        if self.offset_kind == "iota":
            return iota.unsqueeze(2)  # ι_j on every row: (B, K, 1, T)
        return None

    def channels(self, span, iota, T, device, cuda=False):
        """The offset as extra q/k channels (qc, kc) for the fused path, where it is rank-few; else None."""
        if self.offset_kind == "alibi":
            # A fixed offset needs no gradient, so on CPU the flash kernel takes it as a mask: at short contexts
            # that is cheaper than the channels (cpu preset, T = 64: 0.99× against 1.16× the baseline's step);
            # at long ones the channels keep memory linear in T. CUDA's flash kernel takes no mask at all.
            return V.alibi_channels(self.n_head, T, device) if cuda or T > ALIBI_MASK_MAX_T else None
        if self.offset_kind == "soft":
            return V.soft_window_channels(span)
        if self.offset_kind == "iota":
            return V.key_importance_channels(iota)
        return None  # the hard window's log-ramp is not rank-few: a dense offset

    def kernel(self, T, cuda, dropout):
        """The kernel of the training (and evaluation) path: "flex", "hard_window", "dense_structure" or "fused"."""
        if self.offset_kind == "ramp" and cuda and self.block_sparse:
            return "flex"  # block-sparse FlexAttention (two passes under dropout)
        if self.offset_kind == "ramp" and not dropout:
            return "hard_window"  # dense, by hand
        if self.stats == "all" and not cuda and T <= DENSE_STRUCTURE_MAX_T and not dropout:
            # structure_gate on CPU at short contexts: dense weights with a hand-written backward beat D extra
            # value channels for Σ p s (cpu preset: 0.93× the step; for rel and sd alone the channels win)
            return "dense_structure"
        return "fused"

    def __call__(self, q, k, v, span=None, iota=None, *, dropout_p=0.0, dropout=None, record=None):
        """q, k, v (B, H, T, D); span (B|1, H, T|1) tokens; iota (B, K, T). Returns y (B, H, T, D) and the
        structure (a dict of (B, H, T), or None). `dropout_p`: attention dropout (0 in eval); `dropout` and
        `record`: capture's explicit path, which applies the module `dropout` and fills the dict `record`."""
        B, H, T, _ = q.shape
        if record is not None:  # the reference: the dense offset on materialised scores
            y, stats, scores, probs = attend_explicit(q, k, v, self.offset(span, iota, T, q.device),
                                                      block_size=self.block_size, dropout=dropout)
            record.update(scores=scores, probs=probs, stats=stats, span=None if span is None else span.expand(B, H, T))
            return y, stats
        kernel = self.kernel(T, q.is_cuda, dropout_p > 0)
        if kernel == "flex":
            return attend_flex_window(q, k, v, span, dropout_p=dropout_p), None
        if kernel == "hard_window":
            return attend_hard_window(q, k, v, span), None
        if kernel == "dense_structure":
            return attend_dense_structure(q, k, v, stats=self.stats, block_size=self.block_size)
        channels = self.channels(span, iota, T, q.device, q.is_cuda)
        offset = None if channels is not None else self.offset(span, iota, T, q.device)
        return attend_fused(q, k, v, offset, channels=channels, stats=self.stats, block_size=self.block_size,
                            dropout_p=dropout_p, align=CUDA_ALIGN if q.is_cuda else 1)
