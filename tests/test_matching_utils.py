"""``RunningTop1``, the one chunked running argmax of the ports (MASA, TTSR, C²-Matching, SRNTT, E2ENT²), against
its oracle: one unchunked ``torch.max`` over all candidates (ties: the lowest index, as torch.max documents for
the first maximal value on CPU)."""

from __future__ import annotations

import pytest
import torch

from methods._matching_utils import RunningTop1


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_chunked_top1_equals_one_max_with_ties_across_chunks(chunk: int) -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (5, 11), generator=generator).float()  # few levels: many ties across chunks
    running = RunningTop1()
    for start in range(0, scores.shape[1], chunk):
        value, index = scores[:, start : start + chunk].max(dim=1)
        running.update(value, index + start)
    value, index = running.result()
    expected_value, expected_index = scores.max(dim=1)
    assert torch.equal(value, expected_value)
    assert torch.equal(index, expected_index)


def test_no_chunk_is_an_error() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        RunningTop1().result()
