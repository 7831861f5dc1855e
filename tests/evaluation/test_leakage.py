"""The leakage guard refuses subjects the model has seen, names them, and can be overridden."""

from __future__ import annotations

import pytest

from neuro_ssl.errors import LeakageError, NeuroSSLError
from neuro_ssl.evaluation.leakage import check_leakage, overlapping_subjects


def test_no_overlap_passes():
    assert check_leakage(["s1", "s2"], ["s3", "s4", float("nan")]) == []


def test_overlap_is_refused_with_count_and_ids():
    trained = [f"sub-{i:03d}" for i in range(20)]
    evaluated = [f"sub-{i:03d}" for i in range(12, 40)]
    with pytest.raises(LeakageError) as info:
        check_leakage(trained, evaluated, source="runs/ft/model.pt", target="test.csv")
    message = str(info.value)
    assert isinstance(info.value, NeuroSSLError) and "\n" not in message
    assert "8 of its 28 subjects" in message and "runs/ft/model.pt" in message and "test.csv" in message
    assert "sub-012" in message and "..." in message and "--allow-overlap" in message


def test_override_returns_the_overlap_for_the_record():
    assert check_leakage(["a", "b"], ["b", "c"], allow_overlap=True) == ["b"]


def test_ids_compare_as_strings_with_leading_zeros():
    assert overlapping_subjects(["011"], ["11"]) == []
    assert overlapping_subjects([11], ["11"]) == ["11"]
