"""The CPU scoring hot path: ordered sub-batches on several threads and the fast id map must give
exactly what the plain path gives (same scores in input order, same indices)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from bundle_factory import make_bundle
from hypothesis import given, settings
from hypothesis import strategies as st

from recmodels.encoders import IdEncoder
from recmodels.errors import ConfigError
from recmodels.scoring import Scorer, ScoringSession


@pytest.fixture(scope="module")
def neumf(tmp_path_factory):
    # more users than items: pairs are ordered by user index
    return make_bundle(tmp_path_factory.mktemp("b") / "neumf", kind="neumf", folded=True,
                       n_users=300, n_items=120)


@pytest.mark.parametrize("threads,sub_batch", [(1, 7), (2, 7), (3, 64), (2, 100_000)])
def test_ordered_sub_batches_match_one_call(neumf, threads, sub_batch):
    plain = ScoringSession(neumf.path, "cpu", threads=1, sub_batch=100_000)
    fast = ScoringSession(neumf.path, "cpu", threads=threads, sub_batch=sub_batch)
    rng = np.random.default_rng(3)
    for n in (1, 6, 7, 8, 500, 1001):
        u = rng.integers(0, 300, n)
        i = rng.integers(0, 120, n)
        expect = plain.run(u, i)
        got = fast.run(u, i)
        np.testing.assert_allclose(got, expect, atol=1e-6, rtol=0)
        order = fast.order(u, i)
        if n > sub_batch:
            assert order is not None and np.array_equal(np.sort(order), np.arange(n))
            np.testing.assert_array_equal(fast.run(u, i, order), got)
        else:
            assert order is None
    fast.close()


def test_order_sorts_by_the_larger_table(neumf, tmp_path):
    s = ScoringSession(neumf.path, "cpu", sub_batch=4)
    u = np.array([5, 3, 299, 0, 7, 3], dtype=np.int64)
    i = np.array([9, 2, 3, 4, 5, 1], dtype=np.int64)
    assert np.all(np.diff(u[s.order(u, i)]) >= 0)
    tall = make_bundle(tmp_path / "items", kind="mf", n_users=10, n_items=90)
    s = ScoringSession(tall.path, "cpu", sub_batch=4)
    assert np.all(np.diff(i[s.order(u, i)]) >= 0)
    # over 2**16 rows: a 16-bit key of the index's high bits (neighbours share a key)
    wide = make_bundle(tmp_path / "wide", kind="mf", n_users=70_000, n_items=3, dim=2)
    s = ScoringSession(wide.path, "cpu", sub_batch=4)
    u = np.random.default_rng(0).integers(0, 70_000, 1000)
    order = s.order(u, np.zeros(1000, dtype=np.int64))
    assert np.array_equal(np.sort(order), np.arange(1000))
    assert np.all(np.diff(u[order] >> 1) >= 0)


def test_bad_threads_and_sub_batch(neumf):
    with pytest.raises(ConfigError):
        ScoringSession(neumf.path, "cpu", threads=0)
    with pytest.raises(ConfigError):
        ScoringSession(neumf.path, "cpu", sub_batch=0)


def test_scorer_big_batches_match_small(neumf):
    rng = np.random.default_rng(5)
    n = 5000
    users = neumf.user_ids[rng.integers(0, len(neumf.user_ids), n)].astype(np.int64)
    items = neumf.item_ids[rng.integers(0, len(neumf.item_ids), n)].astype(np.int64)
    users[::13] = 10**15  # unknown
    items[::17] = -(2**63)
    batch = pa.record_batch({"user_id": users, "item_id": items, "row": np.arange(n)})
    small = Scorer(neumf.path, device="cpu", batch_size=50, threads=1)
    big = Scorer(neumf.path, device="cpu", batch_size=4096, threads=2)
    big._session.sub_batch = 33
    a = pa.Table.from_batches(list(small.score_batches([batch]))).to_pandas()
    b = pa.Table.from_batches(list(big.score_batches([batch]))).to_pandas()
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6)
    assert b["row"].tolist() == list(range(n))
    assert (~b["known"]).sum() == np.count_nonzero((np.arange(n) % 13 == 0) | (np.arange(n) % 17 == 0))


def _encoder(classes):
    return IdEncoder("user").fit(np.asarray(classes, dtype=np.int64))


@settings(max_examples=60, deadline=None)
@given(
    classes=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=30, unique=True),
    extra=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30),
    near=st.lists(st.integers(-3, 3), max_size=30),
)
def test_dense_lookup_matches_ranks(classes, extra, near):
    enc = _encoder(classes)
    ids = list(classes) + list(extra)
    ids += [min(max(c + d, -(2**63)), 2**63 - 1) for c, d in zip(classes, near, strict=False)]
    column = pa.array(ids, type=pa.int64())
    # the dense-table fast path (int64 Arrow, no nulls) agrees with the general path (numpy input)
    fast, _ = enc.lookup(column)
    np.testing.assert_array_equal(fast, enc.lookup(np.asarray(ids, dtype=np.int64))[0])
    ranks = {v: k for k, v in enumerate(sorted(classes))}
    assert fast.tolist() == [ranks.get(v, -1) for v in ids]


def test_dense_lookup_edges_and_fallbacks():
    enc = _encoder([2**63 - 3, 2**63 - 2, 2**63 - 1])
    assert enc._lut is not None
    ids = pa.array([-(2**63), 2**63 - 1, 2**63 - 4, 2**63 - 3, 0], type=pa.int64())
    assert enc.transform(ids).tolist() == [-1, 2, -1, 0, -1]
    with_null = pa.array([2**63 - 2, None], type=pa.int64())
    assert enc.transform(with_null).tolist() == [1, -1]
    strings = IdEncoder("user").fit(np.array(["a", "b"], dtype=object))
    assert strings.transform(pa.array(["b", "z"])).tolist() == [1, -1]
    sparse = _encoder([0, 10**12])
    assert sparse._lut is None
    assert sparse.transform(pa.array([10**12, 5], type=pa.int64())).tolist() == [1, -1]
