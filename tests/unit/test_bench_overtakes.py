"""The bench's overtake counts (bench/_contention.py), on stamps made up by hand.

The suite runs as ``python -m pytest`` from the repository (``make test``), so
the ``bench`` package is importable beside ``tests``.
"""

from __future__ import annotations

from bench._contention import overtakes, shared_overtakes

# (asked, got, released, exclusive, token)
HOLDER = (0.0, 0.0, 1.0, False, 10)


def test_a_mutex_acquisition_served_before_an_earlier_request_is_an_overtake() -> None:
    assert overtakes([(0.1, 1.5), (0.2, 1.0)]) == 1
    assert overtakes([(0.1, 1.0), (0.2, 1.5)]) == 0


def test_a_reader_entering_beside_readers_before_an_earlier_reader_is_no_overtake() -> None:
    early, late = (0.1, 1.5, 2.0, False, 30), (0.2, 0.5, 1.4, False, 20)
    assert shared_overtakes([HOLDER, early, late], None) == 0


def test_a_reader_served_before_an_earlier_writer_is_an_overtake() -> None:
    writer, reader = (0.1, 1.5, 2.0, True, 30), (0.2, 0.5, 1.4, False, 20)
    assert shared_overtakes([HOLDER, writer, reader], None) == 1


def test_one_write_serves_those_it_admits_together() -> None:
    writer, reader = (0.1, 1.5, 2.0, True, 20), (0.2, 0.5, 1.4, False, 20)
    assert shared_overtakes([HOLDER, writer, reader], None) == 0


def test_on_a_semaphore_only_taking_the_last_place_before_an_earlier_request_overtakes() -> None:
    early, late = (0.1, 1.5, 2.0, False, 30), (0.2, 0.5, 1.4, False, 20)
    assert shared_overtakes([HOLDER, early, late], 2) == 1  # HOLDER and late fill both places
    assert shared_overtakes([HOLDER, early, late], 3) == 0  # a place was left for early
