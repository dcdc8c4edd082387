"""One lock per output, SIGTERM, and what killed runs leave behind (issue 21 #11, #12).

Real processes throughout: a slowed-down ``recmodels score`` (the writer monkeypatched in the child,
no test hook in the library) is the "first run"; the second run, ``kill``/``SIGTERM`` and the checks
happen here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner
from conftest import assert_one_line_failure

from recmodels.cli import cli
from recmodels.errors import OutputError
from recmodels.scoring.output.lock import OutputLock, lock_file, output_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
CLI = [sys.executable, "-m", "recmodels"]
SLOW = textwrap.dedent("""
    import os, sys, time
    from recmodels.cli import main
    from recmodels.scoring.output.writers import FileOutput, PartsOutput
    end_part, write = PartsOutput.end_part, FileOutput.write
    def slow_end_part(self, *args, **kwargs):
        end_part(self, *args, **kwargs)
        time.sleep(float(os.environ["SLOW_SECONDS"]))
    def slow_write(self, batch):
        write(self, batch)
        time.sleep(float(os.environ["SLOW_SECONDS"]))
    PartsOutput.end_part, FileOutput.write = slow_end_part, slow_write
    sys.exit(main(sys.argv[1:]))
""")
OPTS = ["--device", "cpu", "--part-rows", "50", "--batch-size", "25", "-q"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    fb = make_bundle(root / "bundle", kind="mf")
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"user_id": fb.user_ids[rng.integers(0, len(fb.user_ids), n)],
                       "item_id": fb.item_ids[rng.integers(0, len(fb.item_ids), n)]})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), root / "in.parquet", row_group_size=100)
    return [str(fb.path), str(root / "in.parquet")]


def _slow_run(args: list[str], out: Path, *extra: str, seconds: float = 0.05) -> subprocess.Popen:
    """``recmodels score`` sleeping ``seconds`` after each part or batch it writes (40 of them)."""
    return subprocess.Popen([sys.executable, "-c", SLOW, "score", *args, str(out), *OPTS, *extra],
                            env={**ENV, "SLOW_SECONDS": str(seconds)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"the first run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after 60 s"
        time.sleep(0.01)


def _temporaries(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.endswith((".tmp", ".lock", ".parts"))]


def test_a_second_run_refuses_while_the_first_writes_parts(tmp_path, setup):
    out = tmp_path / "out"
    first = _slow_run(setup, out, seconds=0.3)  # 12 s: time for two more runs to start and end
    _wait_for(lambda: len(list(out.glob("part-*"))) >= 3, first, "three parts")
    for flag in ("--resume", "--overwrite"):
        second = subprocess.run(CLI + ["score", *setup, str(out), *OPTS, flag], env=ENV, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"Error: {out} is being written by another run, pid {first.pid};" in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err  # its in-flight part was left alone
    assert (out / "_SUCCESS").exists() and len(pd.read_parquet(out)) == 2000
    assert _temporaries(tmp_path) == []


def test_a_second_overwrite_refuses_while_the_first_writes_a_file(tmp_path, setup):
    out = tmp_path / "o.parquet"
    out.write_bytes(b"yesterday's scores")
    first = _slow_run(setup, out, "--overwrite", "--batch-size", "50", seconds=0.2)
    _wait_for(lambda: list(tmp_path.glob(".o.parquet.*.tmp")), first, "temporary file")
    second = CliRunner().invoke(cli, ["score", *setup, str(out), *OPTS, "--overwrite"])
    assert_one_line_failure(second, f"{out} is being written by another run, pid {first.pid}")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert len(pd.read_parquet(out)) == 2000 and _temporaries(tmp_path) == []


@pytest.mark.parametrize("name", ["o.parquet", "out"])
def test_sigterm_stops_like_ctrl_c_and_leaves_nothing_half_written(tmp_path, setup, name):
    out = tmp_path / name
    first = _slow_run(setup, out)
    if name == "out":
        _wait_for(lambda: len(list(out.glob("part-*"))) >= 3, first, "three parts")
    else:
        _wait_for(lambda: list(tmp_path.glob(".o.parquet.*.tmp")), first, "temporary file")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM and err == "Error: stopped by SIGTERM\n", err
    assert _temporaries(tmp_path) == []
    if name == "o.parquet":
        assert not out.exists()
        return
    kept = len(list(out.glob("part-*")))
    assert kept >= 3 and not (out / "_SUCCESS").exists()  # complete parts stay for --resume
    subprocess.run(CLI + ["score", *setup, str(out), *OPTS, "--resume"], env=ENV, check=True, timeout=120)
    assert len(pd.read_parquet(out)) == 2000 and _temporaries(tmp_path) == []


def test_a_later_run_removes_what_dead_runs_left(tmp_path, setup):
    (tmp_path / ".o.parquet.4242.tmp").write_bytes(b"half a file")  # a killed one-file run
    (tmp_path / ".o.parquet.lock").write_text("4242 elsewhere\n")  # its lock file: nobody holds it
    (tmp_path / ".o.parquet.4242.parts").mkdir()  # an engine's staging directory
    (tmp_path / ".other.parquet.4242.tmp").write_bytes(b"another output's: not ours")
    (tmp_path / "out").mkdir()  # a part directory killed before its first record
    (tmp_path / "out" / ".part-00000.parquet.4242.tmp").write_bytes(b"half a part")
    for out in ("o.parquet", "out"):
        res = CliRunner().invoke(cli, ["score", *setup, str(tmp_path / out), *OPTS])
        assert res.exit_code == 0, res.output
    assert _temporaries(tmp_path) == [".other.parquet.4242.tmp"]
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == len(pd.read_parquet(tmp_path / "out")) == 2000


HOLD = textwrap.dedent("""
    import sys
    from recmodels.scoring.output.lock import output_lock
    with output_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
""")


def test_the_lock_api(tmp_path):
    out = tmp_path / "sub" / "r.json"
    with output_lock(out) as outer:
        assert lock_file(out).read_text().split()[0] == str(os.getpid())
        with OutputLock(out):  # re-entrant within a process: a command, then its writer
            pass
        assert lock_file(out).exists() and outer.file == lock_file(out)
    assert not lock_file(out).exists()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(OutputError, match=f"being written by another run, pid {holder.pid};"):
            OutputLock(out).acquire()
        res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "missing-model"), "--json", str(out)])
        assert_one_line_failure(res, f"{out} is being written by another run, pid {holder.pid}")
    finally:
        holder.communicate("", timeout=30)
    with OutputLock(out):  # given back by a process that ended: taken at once
        pass
