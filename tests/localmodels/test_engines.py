"""Pieces of the generation loop that need no model."""

from __future__ import annotations

from hexahub.localmodels.engines import _partial_stop


def test_text_that_may_start_a_stop_sequence_is_held_back() -> None:
    stops = ["</answer>", "STOP"]
    assert _partial_stop("The end </ans", stops, 9) == 5
    assert _partial_stop("The end <", stops, 9) == 1
    assert _partial_stop("The end", stops, 9) == 0
    assert _partial_stop("ST", stops, 9) == 2
    assert _partial_stop("STOPPED", ["STOP"], 4) == 0  # a full match is found before this
