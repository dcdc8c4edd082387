"""`recmodels score|recommend --engine dask|spark`: same output as local, one-line errors, lazy imports."""

from __future__ import annotations

import dataclasses
import http.server
import importlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner
from conftest import assert_one_line_failure

from recmodels.cli import cli
from recmodels.scoring import Scorer, recommend

ENGINE_MODULES = ("pyspark", "dask", "distributed", "py4j")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines-cli")
    fb = make_bundle(root / "bundle", kind="mf", n_users=40, n_items=30)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "rid": np.arange(3000, dtype=np.int64),
            "user_id": rng.choice(np.append(fb.user_ids, [55555]), 3000),
            "item_id": rng.choice(fb.item_ids, 3000),
        }
    )
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), root / "pairs.parquet", row_group_size=1000
    )
    frame.to_csv(root / "pairs.csv", index=False)
    pq.write_table(pa.Table.from_pandas(frame.iloc[:700, 1:], preserve_index=False), root / "seen.parquet")
    return root, fb, frame


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_importing_recmodels_never_imports_an_engine():
    code = textwrap.dedent(f"""
        import sys
        import recmodels, recmodels.scoring, recmodels.cli
        from recmodels.cli import main
        try:
            main(["score", "--help"])
        except SystemExit:
            pass
        bad = [m for m in sys.modules if m.split(".")[0] in {ENGINE_MODULES!r}]
        assert not bad, bad
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_engine_modules_import_the_real_packages():
    pytest.importorskip("dask")
    pytest.importorskip("pyspark")
    import dask
    import pyspark

    import recmodels.engines.dask
    import recmodels.engines.spark

    assert recmodels.engines.dask.dask is dask and recmodels.engines.dask.dd.read_parquet
    assert recmodels.engines.spark.pyspark is pyspark
    assert "site-packages" in dask.__file__


def test_dask_score_on_parquet_never_imports_dask_dataframe(setup, tmp_path):
    """Issue 23: ``dask.dataframe`` (dask.array, scipy: ~0.9 s of start-up) is imported only for a
    frame; ``score --engine dask`` on Parquet parts and ``recommend --engine dask`` use none."""
    pytest.importorskip("distributed")
    root, fb, _ = setup
    code = textwrap.dedent(f"""
        import sys
        from recmodels.cli import main
        for args in (["score", {str(fb.path)!r}, {str(root / "pairs.parquet")!r}, {str(tmp_path / "s")!r}],
                     ["recommend", {str(fb.path)!r}, {str(tmp_path / "r")!r}, "-k", "3"]):
            try:
                main([*args, "--engine", "dask", "--device", "cpu", "-q"])
            except SystemExit as exc:
                assert exc.code in (0, None), exc.code
        assert "distributed" in sys.modules and "dask.dataframe" not in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert (tmp_path / "s" / "_SUCCESS").is_file() and (tmp_path / "r" / "_SUCCESS").is_file()


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_a_missing_engine_is_one_line_naming_the_extra(setup, tmp_path, engine):
    root, fb, _ = setup
    blocked = {"dask": ("dask", "distributed"), "spark": ("pyspark", "py4j")}[engine]
    code = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, Block())
        from recmodels.cli import main
        main(sys.argv[1:])
    """)
    args = ["score", fb.path, root / "pairs.parquet", tmp_path / "out", "--engine", engine]
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"pip install 'recmodels[{engine}]'" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --engine dask"),
        (["--engine", "dask", "--master", "local[2]"], "--master needs --engine spark"),
        (["--dask-workers", "threads"], "--dask-workers needs --engine dask without --scheduler"),
        (
            ["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--dask-workers", "processes"],
            "--dask-workers needs --engine dask without --scheduler",
        ),
        (["--engine", "dask", "--resume"], "--resume with --engine dask needs a Parquet input"),
        (["--engine", "spark", "--part-rows", "10"], "--part-rows with --engine spark needs a Parquet input"),
    ],
)
def test_engine_options_that_do_not_fit_are_one_line(setup, tmp_path, args, fragment):
    root, fb, _ = setup
    res = invoke("score", fb.path, root / "pairs.csv", tmp_path / "out", *args)
    assert_one_line_failure(res, fragment)


@pytest.mark.parametrize(
    ("engine", "flag", "address"),
    [("dask", "--scheduler", "tcp://127.0.0.1:{port}"), ("spark", "--master", "spark://127.0.0.1:{port}")],
)
def test_a_cluster_that_does_not_answer_is_one_line_after_a_bounded_wait(
    setup, tmp_path, engine, flag, address
):
    pytest.importorskip({"dask": "distributed", "spark": "pyspark"}[engine])
    root, fb, _ = setup
    t0 = time.perf_counter()
    res = invoke(
        "score",
        fb.path,
        root / "pairs.parquet",
        tmp_path / "out",
        "--engine",
        engine,
        flag,
        address.format(port=free_port()),
    )
    assert_one_line_failure(res, "no answer from 127.0.0.1")
    assert time.perf_counter() - t0 < 15
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", [[], ["--dask-workers", "processes"]], ids=["threads", "processes"])
def test_cli_dask_score_matches_local_and_writes_the_same_report(setup, tmp_path, workers):
    """The local cluster of ``--engine dask``: in-process workers (default) or worker processes."""
    pytest.importorskip("distributed")
    root, fb, frame = setup
    report = tmp_path / "r.json"
    res = invoke(
        "score",
        fb.path,
        root / "pairs.csv",
        tmp_path / "out",
        "--engine",
        "dask",
        *workers,
        "--device",
        "cpu",
        "--report",
        report,
    )
    assert res.exit_code == 0, res.output
    local_report = tmp_path / "local.json"
    res_local = invoke(
        "score", fb.path, root / "pairs.csv", tmp_path / "local", "--device", "cpu", "--report", local_report
    )
    assert res_local.exit_code == 0, res_local.output
    got = pd.read_parquet(tmp_path / "out").sort_values("rid").reset_index(drop=True)
    want = pd.read_parquet(tmp_path / "local").sort_values("rid").reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert (
        (got[["rid", "user_id", "item_id", "known"]] == want[["rid", "user_id", "item_id", "known"]])
        .all()
        .all()
    )
    np.testing.assert_allclose(got.score, want.score, atol=1e-6, rtol=0)
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    a, b = json.loads(report.read_text()), json.loads(local_report.read_text())
    assert set(a) == set(b)
    for key in ("rows_read", "rows_written", "unknown_users", "unknown_rows", "provider", "unknown_policy"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("cluster", ["scheduler", "local threads"])
def test_cli_dask_recommend_matches_local_part_by_part(setup, tmp_path, cluster):
    pytest.importorskip("distributed")
    root, fb, frame = setup
    common = ["-k", 3, "--exclude-seen", root / "seen.parquet", "--device", "cpu", "--part-users", 16]
    where = ["--scheduler", _scheduler()] if cluster == "scheduler" else []  # else the local default
    res = invoke("recommend", fb.path, tmp_path / "out", "--engine", "dask", *where, *common)
    assert res.exit_code == 0, res.output
    res_local = invoke("recommend", fb.path, tmp_path / "local", *common)
    assert res_local.exit_code == 0
    parts = sorted(p.name for p in (tmp_path / "out").glob("part-*"))
    assert parts == sorted(p.name for p in (tmp_path / "local").glob("part-*")) and len(parts) == 3
    for name in parts:
        got, want = pd.read_parquet(tmp_path / "out" / name), pd.read_parquet(tmp_path / "local" / name)
        assert (got[["user_id", "rank", "item_id"]] == want[["user_id", "rank", "item_id"]]).all().all()
        np.testing.assert_allclose(got.score, want.score, atol=1e-6, rtol=0)
    assert len(pd.read_parquet(tmp_path / "out")) == len(
        recommend(fb.path, k=3, exclude_seen=root / "seen.parquet", device="cpu")
    )


_CLUSTER = {}


def _scheduler() -> str:
    """A threads-only scheduler in this process (cheap), kept for the module."""
    if "cluster" not in _CLUSTER:
        import distributed

        _CLUSTER["cluster"] = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        )
    return _CLUSTER["cluster"].scheduler_address


@pytest.fixture(scope="module", autouse=True)
def _close_cluster():
    yield
    if "cluster" in _CLUSTER:
        _CLUSTER.pop("cluster").close()


def test_cli_dask_bad_input_is_one_line_and_leaves_nothing(setup, tmp_path):
    pytest.importorskip("distributed")
    root, fb, frame = setup
    res = invoke(
        "score",
        fb.path,
        root / "pairs.parquet",
        tmp_path / "out",
        "--engine",
        "dask",
        "--scheduler",
        _scheduler(),
        "--user-col",
        "uid",
    )
    assert_one_line_failure(res, "no user id column 'uid'")
    res = invoke("score", fb.path, root / "nope.parquet", tmp_path / "out", "--engine", "dask")
    assert_one_line_failure(res, "file not found")
    assert not (tmp_path / "out").exists()
    assert Scorer(fb.path, device="cpu")  # the bundle is untouched


def test_cli_dask_truncated_parquet_is_one_line(setup, tmp_path):
    pytest.importorskip("distributed")
    root, fb, _ = setup
    bad = tmp_path / "bad.parquet"
    bad.write_bytes((root / "pairs.parquet").read_bytes()[:300])
    res = invoke("score", fb.path, bad, tmp_path / "out", "--engine", "dask", "--scheduler", _scheduler())
    assert_one_line_failure(res, "bad.parquet")
    assert not (tmp_path / "out").exists()


def test_cli_dask_parquet_parts_are_the_local_parts_and_resume_works(setup, tmp_path):
    pytest.importorskip("distributed")
    root, fb, _ = setup
    common = ["--device", "cpu", "--part-rows", 700]
    res = invoke(
        "score",
        fb.path,
        root / "pairs.parquet",
        tmp_path / "out",
        "--engine",
        "dask",
        "--scheduler",
        _scheduler(),
        *common,
    )
    assert res.exit_code == 0, res.output
    assert invoke("score", fb.path, root / "pairs.parquet", tmp_path / "local", *common).exit_code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len([n for n in names if n.startswith("part-")]) == 5  # 3000 rows / 700
    for name in names:
        if name.startswith("part-"):
            got, want = pd.read_parquet(tmp_path / "out" / name), pd.read_parquet(tmp_path / "local" / name)
            assert (got.drop(columns="score") == want.drop(columns="score")).all().all(), name
            np.testing.assert_allclose(got.score, want.score, atol=1e-6, rtol=0)
    assert (tmp_path / "out" / "_scoring.json").read_text() == (
        tmp_path / "local" / "_scoring.json"
    ).read_text()
    before = pd.read_parquet(tmp_path / "out")
    (tmp_path / "out" / "part-00002.parquet").unlink()
    (tmp_path / "out" / "_SUCCESS").unlink()
    report = tmp_path / "resume.json"
    res = invoke(
        "score",
        fb.path,
        root / "pairs.parquet",
        tmp_path / "out",
        "--engine",
        "dask",
        "--scheduler",
        _scheduler(),
        "--resume",
        "--report",
        report,
        *common,
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    assert (rep["parts_written"], rep["parts_resumed"], rep["rows_read"]) == (1, 4, 700)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out"), before)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # the server's log is not the command's output
        pass


class _QuietHTTPServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hangs up mid-request (the command, once it has its answer) makes
        # socketserver print a traceback to sys.stderr, which CliRunner captures as the
        # command's output: the fake server's noise, not the command's.
        pass


class FakeServer:
    """A TCP port that is not a cluster: ``silent`` accepts and never answers, ``talks`` greets
    first like an SSH server, ``http`` is an HTTP server (a dashboard, say)."""

    def __init__(self, kind: str):
        self.conns: list[socket.socket] = []
        if kind == "http":
            self.server = _QuietHTTPServer(("127.0.0.1", 0), _QuietHandler)
            self.port = self.server.server_address[1]
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
            return
        self.server = None
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

        def accept():
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self.conns.append(conn)
                if kind == "talks":
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        threading.Thread(target=accept, daemon=True).start()

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            return
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(params=["silent", "talks", "http"])
def fake_server(request):
    server = FakeServer(request.param)
    yield request.param, server.port
    server.close()


@pytest.mark.parametrize(
    ("engine", "command"), [("dask", "recommend"), ("spark", "score")], ids=["dask-recommend", "spark-score"]
)
def test_an_address_that_is_not_the_cluster_is_one_line_within_15_s_and_writes_nothing(
    setup, tmp_path, fake_server, engine, command
):
    """Issue 21 #3 and #4: a port that never answers, one that talks first (SSH) and an HTTP server
    are each one line naming what was found, within 15 s, before anything is written (recommend
    wrote ``_scoring.json`` before it hung; SSH was called 'out of memory')."""
    pytest.importorskip({"dask": "distributed", "spark": "pyspark"}[engine])
    root, fb, _ = setup
    kind, port = fake_server
    flag, address = {"dask": ("--scheduler", f"tcp://127.0.0.1:{port}"),
                     "spark": ("--master", f"spark://127.0.0.1:{port}")}[engine]
    args = {"score": ["score", fb.path, root / "pairs.parquet", tmp_path / "out"],
            "recommend": ["recommend", fb.path, tmp_path / "out", "-k", 3]}[command]
    importlib.import_module(f"recmodels.engines.{engine}")  # the engine's import is not the wait
    t0 = time.perf_counter()
    res = invoke(*args, "--engine", engine, flag, address, "--device", "cpu")
    assert time.perf_counter() - t0 < 15
    found = {"silent": "did not answer within 10 s", "talks": "talks another protocol: 'SSH-2.0-OpenSSH_9.6'",
             "http": "it is an HTTP server"}[kind]
    kind_name = {"dask": "not a Dask scheduler", "spark": "not a Spark master"}[engine]
    assert_one_line_failure(res, f"{flag} {address}: {kind_name}", found)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []


def test_recommend_resume_on_an_engine_says_it_is_not_resumable(setup, tmp_path):
    root, fb, _ = setup
    res = invoke("recommend", fb.path, tmp_path / "out", "--engine", "dask", "--resume")
    assert_one_line_failure(res, "--resume does not work with recommend --engine dask")


# -- --history on the engines (issue 22) ---------------------------------------------------------
@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """A bundle with the prior rows and fold-in arrays; pairs and a history with new users 7 and 8
    (8 below --history-min-ratings 3), a new item 4 and two known users whose rows it updates."""
    root = tmp_path_factory.mktemp("engines-history")
    rng = np.random.default_rng(9)
    train = rng.integers(0, 40, 2000), rng.integers(0, 60, 2000)
    fb = make_bundle(root / "bundle", kind="neumf", folded=True, prior=True, n_users=40, n_items=60,
                     train_rows=train, rating_range=(-10.0, 10.0))
    users, items = np.r_[fb.user_ids, [7, 8, 9]], np.r_[fb.item_ids, [4]]
    n = 3000
    pairs = pd.DataFrame({"rid": np.arange(n), "user_id": rng.choice(users, n),
                          "item_id": rng.choice(items, n)})
    pq.write_table(pa.Table.from_pandas(pairs, preserve_index=False), root / "pairs.parquet",
                   row_group_size=500)
    history = pd.DataFrame({
        "user_id": [7] * 6 + [8] * 2 + [fb.user_ids[0]] * 3 + list(fb.user_ids[1:4]),
        "item_id": [*fb.item_ids[:6], *fb.item_ids[6:8], *fb.item_ids[10:13], 4, 4, 4],
        "rating": rng.uniform(-6, 6, 14).round(2),
    })
    history.to_csv(root / "history.csv", index=False)
    seen = pd.DataFrame({"user_id": np.repeat(fb.user_ids[:5], 4), "item_id": rng.choice(fb.item_ids, 20)})
    pq.write_table(pa.Table.from_pandas(seen, preserve_index=False), root / "seen.parquet")
    return root, fb, history


def _same_output(got, want, *, parts_only=False) -> None:
    """The same files (hidden ones included: no staged fold-in left behind), each part equal;
    ``parts_only``: the part files (an engine's recommend writes no sidecars)."""
    names = sorted(p.name for p in want.iterdir() if p.name.startswith("part-") or not parts_only)
    found = sorted(p.name for p in got.iterdir() if p.name.startswith(("part-", ".")) or not parts_only)
    assert found == names
    for name in names:
        if name.startswith("part-"):
            assert pq.read_table(got / name).equals(pq.read_table(want / name)), name
        elif name == "_scoring.json":
            assert json.loads((got / name).read_text()) == json.loads((want / name).read_text())


def test_cli_dask_score_with_history_is_the_local_output_and_resumes(folded, tmp_path):
    """The fold-in is computed once on the driver and read once per worker process: the parts
    (and ``_scoring.json``, which records the history) are the local run's byte for byte; a
    resume with the history equals a clean run, and another history is refused."""
    pytest.importorskip("distributed")
    root, fb, history = folded
    common = ["--device", "cpu", "--part-rows", 500, "--batch-size", 128, "--max-unknown-share", 1,
              "--history", root / "history.csv", "--history-min-ratings", 3, "--report"]
    args = ["score", fb.path, root / "pairs.parquet"]
    engine = ["--engine", "dask", "--scheduler", _scheduler()]
    res = invoke(*args, tmp_path / "out", *common, tmp_path / "r.json", *engine)
    assert res.exit_code == 0, res.output
    assert "history: 1 new users and 1 new items folded in" in res.output
    res_local = invoke(*args, tmp_path / "local", *common, tmp_path / "local.json")
    assert res_local.exit_code == 0, res_local.output
    _same_output(tmp_path / "out", tmp_path / "local")
    assert json.loads((tmp_path / "r.json").read_text())["history"] == \
        json.loads((tmp_path / "local.json").read_text())["history"]
    plain = invoke(*args, tmp_path / "plain", *common[:-5], "--report", tmp_path / "p.json", *engine)
    assert plain.exit_code == 0, plain.output  # the history changes the scores
    assert not pq.read_table(tmp_path / "plain").equals(pq.read_table(tmp_path / "local"))
    for part in sorted((tmp_path / "out").glob("part-*"))[2:]:  # as if killed after two parts
        part.unlink()
    (tmp_path / "out" / "_SUCCESS").unlink()
    history.assign(rating=history.rating[::-1].to_numpy()).to_csv(tmp_path / "other.csv", index=False)
    other = [c if c != root / "history.csv" else tmp_path / "other.csv" for c in common]
    refused = invoke(*args, tmp_path / "out", *other, tmp_path / "r2.json", *engine, "--resume")
    assert_one_line_failure(refused, "different settings (history)")
    res = invoke(*args, tmp_path / "out", *common, tmp_path / "r3.json", *engine, "--resume")
    assert res.exit_code == 0, res.output
    _same_output(tmp_path / "out", tmp_path / "local")


@pytest.mark.parametrize("users", [False, True], ids=["every-user", "listed-users"])
def test_cli_dask_recommend_with_history_is_the_local_output(folded, tmp_path, users):
    """Folded-in users are ranked as locally; ``--exclude-seen`` also leaves out their history."""
    pytest.importorskip("distributed")
    root, fb, history = folded
    listed = []
    if users:
        pd.DataFrame({"user_id": [7, 8, 9, *fb.user_ids[:6]]}).to_csv(tmp_path / "users.csv", index=False)
        listed = ["--users", tmp_path / "users.csv"]
    common = ["-k", 57, "--exclude-seen", root / "seen.parquet", "--device", "cpu", "--part-users", 16,
              "--history", root / "history.csv", *listed]
    res = invoke("recommend", fb.path, tmp_path / "out", *common, "--engine", "dask")
    assert res.exit_code == 0, res.output
    assert "history: 2 new users folded in, 1 known users updated" in res.output
    assert invoke("recommend", fb.path, tmp_path / "local", *common).exit_code == 0
    _same_output(tmp_path / "out", tmp_path / "local", parts_only=True)
    got = pd.read_parquet(tmp_path / "out")
    for user in (7, fb.user_ids[0]):  # 60 items, k = 57: all but the history and seen items
        rows = got[got.user_id == user]
        assert len(rows) > 0
        assert not set(rows.item_id) & set(history.item_id[history.user_id == user])


def test_cli_engine_bad_history_is_one_line_and_writes_nothing(folded, tmp_path):
    pytest.importorskip("distributed")
    root, fb, history = folded
    history.assign(rating=[*history.rating[:-1], 11.0]).to_csv(tmp_path / "bad.csv", index=False)
    for args in (["score", fb.path, root / "pairs.parquet", tmp_path / "out"],
                 ["recommend", fb.path, tmp_path / "out", "-k", 3]):
        res = invoke(*args, "--engine", "dask", "--device", "cpu", "--history", tmp_path / "bad.csv")
        assert_one_line_failure(res, "bad.csv: row 14: rating 11 is outside the bundle's rating range")
        assert not (tmp_path / "out").exists()


def _same(a, b) -> bool:
    """Every field of two fold-ins (or parts of one) equal: arrays by dtype and value."""
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "classes_"):
        return a.kind_ == b.kind_ and _same(a.classes_, b.classes_)
    return a == b


def test_the_shipped_fold_in_is_the_drivers_and_checks_the_workers_bundle(folded):
    """``fold_bytes`` / ``read_fold`` give back every field of the driver's FoldIn (no pickle); the
    sides' vectors come from the worker's bundle and must be the driver's, else one line."""
    from recmodels.engines.contract import fold_bytes, read_fold
    from recmodels.errors import BundleError

    root, fb, history = folded
    fold = Scorer(fb.path, device="cpu", history=history, max_unknown_share=1.0).fold
    fold_bundle = Scorer(fb.path, device="cpu").bundle
    got = read_fold(fold_bytes(fold), fold_bundle)
    assert _same(fold, got) and fold.items.new_ids is not None and fold.users.new_ids is not None
    fold.users.vectors = fold.users.vectors + 1e-3  # as if the driver's bundle were another
    with pytest.raises(BundleError, match="user vectors differ on this worker"):
        read_fold(fold_bytes(fold), fold_bundle)


# -- --item-embeddings on the engines (issue 22) ---------------------------------------------------
NEW_ITEMS = [9001, 9002, 9003]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """A hybrid bundle with the fold-in arrays; vectors of new items 9001-9003 (and a row of a known
    item), pairs naming them, 9004 (no vector) and new user 7; a history where 7 rates known items
    and known users rate 9001 and 9005 (no vector); seen pairs naming new items."""
    root = tmp_path_factory.mktemp("engines-hybrid")
    rng = np.random.default_rng(12)
    train = rng.integers(0, 30, 1500), rng.integers(0, 50, 1500)
    fb = make_bundle(root / "bundle", kind="hybrid", folded=True, prior=True, n_users=30, n_items=50,
                     pretrained_dim=4, train_rows=train, rating_range=(-10.0, 10.0))
    vectors = pd.DataFrame(rng.normal(size=(4, 4)).astype(np.float32), columns=[str(c) for c in range(4)])
    vectors.insert(0, "item_id", [*NEW_ITEMS, int(fb.item_ids[0])])
    vectors.to_csv(root / "vectors.csv", index=False)
    vectors.assign(**{"3": vectors["3"] + 0.5}).to_csv(root / "other.csv", index=False)
    n = 2000
    pairs = pd.DataFrame({"rid": np.arange(n), "user_id": rng.choice(np.r_[fb.user_ids, [7]], n),
                          "item_id": rng.choice(np.r_[fb.item_ids, NEW_ITEMS, [9004]], n)})
    pq.write_table(pa.Table.from_pandas(pairs, preserve_index=False), root / "pairs.parquet",
                   row_group_size=400)
    pd.DataFrame({"user_id": [7] * 4 + list(fb.user_ids[:7]),
                  "item_id": [*fb.item_ids[:4], *[9001] * 4, *[9005] * 3],
                  "rating": rng.uniform(-6, 6, 11).round(2)}).to_csv(root / "history.csv", index=False)
    seen = pd.DataFrame({"user_id": np.repeat(fb.user_ids[:5], 3),
                         "item_id": np.tile([9001, 9002, fb.item_ids[1]], 5)})
    pq.write_table(pa.Table.from_pandas(seen, preserve_index=False), root / "seen.parquet")
    return root, fb


@pytest.mark.parametrize("history", [False, True], ids=["vectors", "vectors+history"])
def test_cli_dask_score_with_item_embeddings_is_the_local_output_and_resumes(hybrid, tmp_path, history):
    """New hybrid items from their vectors (with or without ``--history``) folded in on the driver:
    the parts and ``_scoring.json`` (which records the table's digest) are the local run's byte for
    byte; a resume with the same table equals a clean run, another table is refused."""
    pytest.importorskip("distributed")
    root, fb = hybrid
    common = ["--device", "cpu", "--part-rows", 400, "--batch-size", 128, "--max-unknown-share", 1,
              "--item-embeddings", root / "vectors.csv"]
    common += ["--history", root / "history.csv", "--history-min-ratings", 2] if history else []
    args = ["score", fb.path, root / "pairs.parquet"]
    engine = ["--engine", "dask", "--scheduler", _scheduler()]
    res = invoke(*args, tmp_path / "out", *common, *engine)
    assert res.exit_code == 0, res.output
    assert invoke(*args, tmp_path / "local", *common).exit_code == 0
    _same_output(tmp_path / "out", tmp_path / "local")
    got = pd.read_parquet(tmp_path / "out")
    known_user = got.user_id.isin(fb.user_ids)
    assert got.known[known_user & got.item_id.isin(NEW_ITEMS)].all()
    assert not got.known[got.item_id == 9004].any()
    for part in sorted((tmp_path / "out").glob("part-*"))[2:]:  # as if killed after two parts
        part.unlink()
    (tmp_path / "out" / "_SUCCESS").unlink()
    other = [c if c != root / "vectors.csv" else root / "other.csv" for c in common]
    refused = invoke(*args, tmp_path / "out", *other, *engine, "--resume")
    assert_one_line_failure(refused, "different settings (history)")
    res = invoke(*args, tmp_path / "out", *common, *engine, "--resume")
    assert res.exit_code == 0, res.output
    _same_output(tmp_path / "out", tmp_path / "local")


def test_cli_dask_recommend_with_item_embeddings_is_the_local_output(hybrid, tmp_path):
    """New items are ranked beside the bundle's as locally; ``--exclude-seen`` pairs naming new
    items, and the history's, are left out."""
    pytest.importorskip("distributed")
    root, fb = hybrid
    common = ["-k", 50, "--exclude-seen", root / "seen.parquet", "--device", "cpu", "--part-users", 8,
              "--item-embeddings", root / "vectors.csv", "--history", root / "history.csv",
              "--history-min-ratings", 2]
    res = invoke("recommend", fb.path, tmp_path / "out", *common, "--engine", "dask")
    assert res.exit_code == 0, res.output
    assert invoke("recommend", fb.path, tmp_path / "local", *common).exit_code == 0
    _same_output(tmp_path / "out", tmp_path / "local", parts_only=True)
    got = pd.read_parquet(tmp_path / "out")
    assert set(NEW_ITEMS) <= set(got.item_id)
    first = got[got.user_id == fb.user_ids[0]]  # seen 9001, 9002 and rated 9001 in the history
    assert len(first) == 50 and not {9001, 9002} & set(first.item_id)


def test_cli_engine_bad_item_embeddings_is_one_line_and_writes_nothing(hybrid, tmp_path):
    pytest.importorskip("distributed")
    root, fb = hybrid
    pd.read_csv(root / "vectors.csv").drop(columns="3").to_csv(tmp_path / "narrow.csv", index=False)
    for args in (["score", fb.path, root / "pairs.parquet", tmp_path / "out"],
                 ["recommend", fb.path, tmp_path / "out", "-k", 3]):
        res = invoke(*args, "--engine", "dask", "--device", "cpu", "--item-embeddings",
                     tmp_path / "narrow.csv")
        assert_one_line_failure(res, "narrow.csv: 3 vector column(s)", "4-wide pretrained vectors")
        assert not (tmp_path / "out").exists()


def test_the_shipped_fold_in_of_new_hybrid_items_round_trips(hybrid):
    """Every field of a fold-in with new items from their vectors (the content changes in the item
    deltas, the table's counts in the stats, seen pairs of new items) comes back from its bytes."""
    from recmodels.engines.contract import fold_bytes, read_fold

    root, fb = hybrid
    scorer = Scorer(fb.path, device="cpu", history=root / "history.csv", history_min_ratings=2,
                    item_embeddings=root / "vectors.csv", max_unknown_share=1.0)
    fold = scorer.fold
    assert fold.stats["items_from_vectors"] == 3 and fold.stats["vector_rows_known"] == 1
    assert fold.seen_new[0].size and set(NEW_ITEMS) <= set(fold.items.new_ids.classes_)
    assert _same(fold, read_fold(fold_bytes(fold), scorer.bundle))
