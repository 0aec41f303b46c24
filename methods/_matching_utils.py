"""Chunked top-1 similarity search: the memory-bounded core of patch-matching correspondence steps.

A matcher compares every query patch with every candidate patch and keeps the best one. Done in one
batched matrix product, the similarity matrix has (queries x candidates) entries, which for a stitched
2560x512 reference reaches gigabytes. Here the candidates are visited in chunks and only a running best
(value, index) per query is kept, so memory is bounded by the chunk size while the result is the same as
the one-shot computation: each similarity entry is the same dot product whichever chunk it sits in, and
ties keep the earliest candidate, as ``torch.max`` does within one chunk.

``top1_similarity_chunked`` serves MASA-SR (coarse block search summing three dilations); ``RunningTop1``, the
merge of one chunk's best into the running best, is the one running argmax of every port that chunks its
search (MASA-SR, TTSR, C²-Matching, SRNTT, E2ENT²).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

FLOAT32_BYTES = 4


def top1_similarity_chunked(
    queries: Sequence[torch.Tensor],
    candidate_chunks: Iterable[tuple[int, Sequence[torch.Tensor]]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best summed similarity of each query over all candidates, visiting candidates chunk by chunk.

    ``queries``: T tensors, term t of shape (B, Q, D_t) (e.g. L2-normalised patches, one term per dilation).
    ``candidate_chunks``: yields ``(offset, terms)`` where ``terms[t]`` has shape (B, D_t, n) and holds the
    candidates ``offset .. offset + n - 1`` (global candidate numbering); chunks must come in increasing
    offset order. The similarity of query q and candidate j is sum_t queries[t][q] . terms[t][:, j], summed
    in term order (one ``bmm`` per term and chunk, so cost tools see the matching MACs as ``bmm``).

    Returns ``(best, index)``, shapes (B, Q), float and int64; ``index`` is the global candidate index.
    Ties keep the lowest index.
    """
    running = RunningTop1()
    for offset, terms in candidate_chunks:
        if len(terms) != len(queries):
            raise ValueError(f"chunk has {len(terms)} similarity terms, expected {len(queries)}")
        total = torch.bmm(queries[0], terms[0])
        for query, term in zip(queries[1:], terms[1:], strict=True):
            total = total + torch.bmm(query, term)
        chunk_best, chunk_index = total.max(dim=-1)
        running.update(chunk_best, chunk_index + offset)
    return running.result()


class RunningTop1:
    """The running best (value, index) of every query over candidate chunks visited in increasing index order.

    ``update(value, index)`` takes one chunk's best value and its global candidate index, both of one shape
    (one entry per query); a later chunk replaces the kept entry only where it is strictly greater, so on
    exact ties the earlier chunk (the lower index) wins, as ``torch.max`` does within one chunk. The first
    chunk is kept as given (no comparison, so a NaN or -inf score stays what the chunk said).
    """

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None
        self.index: torch.Tensor | None = None

    def update(self, value: torch.Tensor, index: torch.Tensor) -> None:
        if self.value is None or self.index is None:
            self.value, self.index = value, index
            return
        better = value > self.value
        self.value = torch.where(better, value, self.value)
        self.index = torch.where(better, index, self.index)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(best value, its global index); a ValueError when no chunk was given."""
        if self.value is None or self.index is None:
            raise ValueError("no candidates to search")
        return self.value, self.index


def items_per_chunk(budget_bytes: int, bytes_per_item: int, *, multiple: int = 1, total: int | None = None) -> int:
    """How many items (candidates, blocks) fit a chunk of ``budget_bytes``; at least ``multiple`` and a
    multiple of it (e.g. whole rows of candidates), at most ``total`` when given."""
    count = max(1, budget_bytes // max(1, bytes_per_item) // multiple) * multiple
    if total is not None:
        count = min(count, total)
    return count
