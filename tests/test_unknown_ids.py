"""The unknown-id guard's hint (scoring/unknown_ids.py), for every command that reads ids.

A CSV's ids are read as text first; integer ids the bundle does not know must be called "another
id space", not "text but the bundle's are integer" (issue 21 #5). Text ids that are not integers
still get the type hint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner

from recmodels.bundle import Bundle
from recmodels.cli import cli
from recmodels.scoring.unknown_ids import count_unknown, empty_counts, likely_cause, null_mask

SPACE = "another id space"
TYPE = "are text but the bundle's are integer"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("unknown")
    fb = make_bundle(root / "bundle", kind="mf", n_users=20, n_items=15)
    n = 60
    foreign = pd.DataFrame({"user_id": 900_000 + np.arange(n), "item_id": 800_000 + np.arange(n),
                            "rating": np.full(n, 4.0)})
    foreign.to_csv(root / "foreign.csv", index=False)
    foreign.to_parquet(root / "foreign.parquet", index=False)
    words = foreign.assign(user_id=[f"name{k}" for k in range(n)])
    words.to_csv(root / "words.csv", index=False)
    return root, fb


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_score_integer_ids_from_another_space(files, suffix):
    root, _ = files
    result = CliRunner().invoke(cli, ["score", str(root / "bundle"), str(root / f"foreign.{suffix}"),
                                      str(root / f"out-{suffix}.parquet")])
    assert result.exit_code == 1
    assert SPACE in result.output and TYPE not in result.output, result.output


def test_score_text_ids_against_integer_bundle_keep_the_type_hint(files):
    root, _ = files
    result = CliRunner().invoke(cli, ["score", str(root / "bundle"), str(root / "words.csv"),
                                      str(root / "out-words.parquet")])
    assert result.exit_code == 1
    assert "user ids ('user_id') " + TYPE in result.output, result.output


def test_exclude_seen_and_evaluate_say_the_same(files):
    root, _ = files
    recommend = CliRunner().invoke(cli, ["recommend", str(root / "bundle"), str(root / "recs.parquet"),
                                         "--exclude-seen", str(root / "foreign.csv")])
    assert recommend.exit_code == 1 and SPACE in recommend.output and TYPE not in recommend.output
    evaluate = CliRunner().invoke(cli, ["evaluate", str(root / "bundle"), str(root / "foreign.csv"),
                                        "--all-items"])
    assert evaluate.exit_code == 1 and SPACE in evaluate.output and TYPE not in evaluate.output


def test_likely_cause_without_samples_keeps_the_type_hint(files):
    root, _ = files
    bundle = Bundle.load(root / "bundle")
    cause = likely_cause(bundle, "user_id", "item_id", {"user_id": pa.string()})
    assert TYPE in cause
    cause = likely_cause(bundle, "user_id", "item_id", {"user_id": pa.string()},
                         {"user_id": pa.array(["12", "13", None])})
    assert SPACE in cause


def test_count_unknown_counts_each_side_nulls_once():
    counts = empty_counts()
    users = np.array([0, -1, -1, 2])
    items = np.array([-1, 1, -1, 3])
    user_nulls = np.array([False, True, True, False])
    item_nulls = np.array([False, False, True, False])
    known = count_unknown(counts, users, items, user_nulls, item_nulls)
    assert known.tolist() == [False, False, False, True]
    assert counts == {"unknown_users": 2, "unknown_items": 2, "unknown_rows": 3, "null_ids": 2,
                      "skipped": 0, "unknown_both": 1}
    assert null_mask(None, None) is None
