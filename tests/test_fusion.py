"""Fusion of dense and BM25 rankings: hand-computed RRF and weighted cases."""
from __future__ import annotations

import numpy as np
import pytest

from index.fusion import DEFAULT_METHOD, fuse, normalize, rrf, weighted

DENSE = [("a", 0.90), ("b", 0.80), ("c", 0.50)]
SPARSE = [("c", 12.0), ("d", 6.0), ("a", 3.0)]


def test_rrf_hand_case():
    got = dict(rrf(DENSE, SPARSE, k=60))
    assert got["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert got["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert got["b"] == pytest.approx(1 / 62) and got["d"] == pytest.approx(1 / 62)
    # a and c tie: the one first seen in the dense list wins; b before d likewise.
    assert [d for d, _ in rrf(DENSE, SPARSE)] == ["a", "c", "b", "d"]


def test_weighted_minmax_hand_case():
    # dense minmax: a=1, b=0.75, c=0; sparse minmax: c=1, d=1/3, a=0; b missing -> 0, d missing -> 0.
    got = dict(weighted(DENSE, SPARSE, weight=0.6, norm="minmax"))
    assert got == pytest.approx({"a": 0.6, "b": 0.45, "c": 0.4, "d": 0.4 / 3})
    assert [d for d, _ in weighted(DENSE, SPARSE, weight=0.6)] == ["a", "b", "c", "d"]


def test_weighted_zscore_missing_gets_list_minimum():
    z = normalize(np.array([0.9, 0.8, 0.5]), "zscore")
    got = dict(weighted(DENSE, [("c", 1.0)], weight=0.5, norm="zscore"))
    # single-item sparse list: std 0 -> all 0; docs missing from it get that minimum (0).
    assert got["a"] == pytest.approx(0.5 * z[0]) and got["c"] == pytest.approx(0.5 * z[2])


def test_weights_at_the_ends_reproduce_single_lists():
    assert [d for d, _ in fuse(DENSE, SPARSE, method="weighted", weight=1.0)][:3] == ["a", "b", "c"]
    assert [d for d, _ in fuse(DENSE, SPARSE, method="weighted", weight=0.0)][:3] == ["c", "d", "a"]


def test_normalisations():
    assert normalize(np.array([2.0, 2.0]), "minmax").tolist() == [1.0, 1.0]
    assert normalize(np.array([4.0, 1.0]), "max").tolist() == [1.0, 0.25]
    assert normalize(np.array([]), "zscore").tolist() == []
    with pytest.raises(ValueError, match="norm"):
        normalize(np.array([1.0]), "rank")


def test_empty_lists_and_one_sided():
    assert fuse([], []) == []
    assert [d for d, _ in fuse(DENSE, [])] == ["a", "b", "c"]
    assert [d for d, _ in fuse([], SPARSE)] == ["c", "d", "a"]
    assert [d for d, _ in fuse([], SPARSE, method="rrf")] == ["c", "d", "a"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        fuse(DENSE, SPARSE, method="max")
    with pytest.raises(ValueError, match="weight"):
        fuse(DENSE, SPARSE, weight=1.5)
    with pytest.raises(ValueError, match="k="):
        fuse(DENSE, SPARSE, method="rrf", k=0)


def test_default_is_a_known_method():
    assert DEFAULT_METHOD in ("weighted", "rrf")
    out = fuse(DENSE, SPARSE)
    assert sorted(d for d, _ in out) == ["a", "b", "c", "d"]
    assert [s for _, s in out] == sorted((s for _, s in out), reverse=True)
