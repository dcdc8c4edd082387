"""Training threads without ``num_threads``: the cores other processes leave free (issue 21 #14).

Speed is measured in ``benchmarks/threads_oversubscription.py``, not here; these tests check
the counting and that the trainer follows it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recmodels.models import ModelConfig, build_model  # noqa: E402
from recmodels.training import TrainConfig, Trainer  # noqa: E402
from recmodels.training import threads as T  # noqa: E402


def _load(monkeypatch, cpus, limit, tmp_path):
    monkeypatch.setattr(T, "cpu_set", lambda: list(cpus))
    monkeypatch.setattr(T, "cpu_quota", lambda root="": None)
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4 5 6 7 8 0 0\n")
    return T.CpuLoad(limit, stat=stat)


@pytest.mark.parametrize("others, expected", [(None, 2), (0.0, 2), (0.2, 2), (0.6, 1), (1.0, 1),
                                              (1.9, 1), (6.0, 1)])
def test_a_core_another_process_holds_is_left_to_it(monkeypatch, tmp_path, others, expected):
    assert _load(monkeypatch, [0, 1], 2, tmp_path).threads(others) == expected


def test_the_count_stays_within_torch_s_setting_and_the_quota(monkeypatch, tmp_path):
    load = _load(monkeypatch, range(16), 4, tmp_path)
    assert load.threads(0.0) == 4 and load.threads(13.0) == 3
    monkeypatch.setattr(T, "cpu_quota", lambda root="": 1.5)  # docker --cpus 1.5
    assert T.available_cores() == 2 and T.CpuLoad(8, stat=tmp_path / "stat").limit == 2


def test_others_is_the_cores_busy_time_less_this_process_s(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "cpu_set", lambda: [0, 2])
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    stat = tmp_path / "stat"

    def write(busy0, idle0, busy2):  # user nice system idle iowait irq softirq steal guest guest_nice
        stat.write_text(f"cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 {busy0} 0 0 {idle0} 7 0 0 0 0 0\n"
                        f"cpu1 999 0 0 0 0 0 0 0 0 0\ncpu2 {busy2} 0 0 5 0 0 0 1 0 0\n")

    write(100, 50, 200)
    load = T.CpuLoad(2, stat=stat)
    assert load.last[0] == pytest.approx((100 + 200 + 1) / 100)  # cpu1 is not ours; steal counts
    write(100 + 150, 60, 200 + 50)
    busy, own, wall = load.last
    monkeypatch.setattr(load, "_sample", lambda: (busy + 2.0, own + 0.5, wall + 1.0))
    assert load.others() == pytest.approx(1.5)  # 2 s busy on our cores, 0.5 s of it ours, in 1 s


def test_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert T.cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert T.cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert T.cpu_quota(tmp_path) == 2.0
    assert T.cpu_quota(tmp_path / "missing") is None


@pytest.mark.skipif(not os.path.exists("/proc/stat") or not hasattr(os, "sched_setaffinity"),
                    reason="needs Linux's /proc/stat and CPU affinity")
def test_a_busy_process_on_one_of_our_cores_is_seen():
    cpus = T.cpu_set()
    if len(cpus) < 2:
        pytest.skip("needs 2 cores")
    code = f"import os; os.sched_setaffinity(0, {{{cpus[0]}}})\nwhile True: pass"
    busy = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.3)
        threads, others = T.CpuLoad(len(cpus)).start(window=0.5)
    finally:
        busy.terminate()
        busy.wait()
    assert others >= 0.7 and threads <= len(cpus) - 1, (others, threads)


class FakeLoad:
    """A machine where another process holds one of 2 cores until the first epoch ends."""

    made = []

    def __init__(self, limit):
        self.limit, self.cpus, self.calls = min(limit, 2), [0, 1], 0
        FakeLoad.made.append(self)

    def start(self, window=0.1):
        return 1, 1.0

    def others(self):
        self.calls += 1
        return 0.0

    def threads(self, others):
        return 1 if others >= 0.6 else 2


def _fit(config, lines):
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 600), rng.integers(0, 30, 600)
    ratings = rng.integers(1, 6, 600).astype(np.float32)
    torch.manual_seed(0)
    model = build_model(ModelConfig("mf", 20, 30, embedding_dim=4, global_mean=3.0))
    seen = []
    trainer = Trainer(model, config, torch.device("cpu"), log=lines.append, progress=False,
                      on_epoch_end=lambda t, r, i: seen.append(torch.get_num_threads()))
    trainer.fit((users, items, ratings), (users[:100], items[:100], ratings[:100]))
    return seen


def test_the_trainer_uses_the_free_cores_and_keeps_them_for_the_run(monkeypatch):
    """Chosen once when the fit starts and kept (also by a resume): torch's results depend on the
    thread count, so changing it mid-run would make a resumed run differ from an uninterrupted one."""
    import recmodels.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "CpuLoad", FakeLoad)
    before = torch.get_num_threads()
    FakeLoad.made.clear()
    lines = []
    seen = _fit(TrainConfig(epochs=3, batch_size=256, device="cpu", refit=False), lines)
    assert seen == [1, 1, 1] and len(FakeLoad.made) == 1 and FakeLoad.made[0].calls == 0  # kept
    assert any(line.startswith("threads: 1 of ") for line in lines), lines
    assert torch.get_num_threads() == before  # torch's setting is restored after the fit
    FakeLoad.made.clear()
    assert _fit(TrainConfig(epochs=2, batch_size=256, device="cpu", num_threads=1, refit=False),
                []) == [1, 1] and not FakeLoad.made  # a given --threads is used as it is


def test_a_resume_keeps_the_thread_count_the_run_chose(monkeypatch):
    import recmodels.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "CpuLoad", FakeLoad)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 600), rng.integers(0, 30, 600)
    ratings = rng.integers(1, 6, 600).astype(np.float32)
    config = TrainConfig(epochs=2, batch_size=256, device="cpu", refit=False)
    torch.manual_seed(0)
    model = build_model(ModelConfig("mf", 20, 30, embedding_dim=4, global_mean=3.0))
    trainer = Trainer(model, config.replace(epochs=1), torch.device("cpu"), log=lambda _: None,
                      progress=False)
    trainer.fit((users, items, ratings))
    state = trainer.state_dict()
    assert state["threads"] == 1
    FakeLoad.made.clear()
    resumed = Trainer(build_model(ModelConfig("mf", 20, 30, embedding_dim=4, global_mean=3.0)),
                      trainer.config.replace(epochs=2), torch.device("cpu"), log=lambda _: None,
                      progress=False, on_epoch_end=lambda t, r, i: seen.append(torch.get_num_threads()))
    seen = []
    resumed.load_state_dict(state)
    resumed.fit((users, items, ratings))
    assert seen == [1] and not FakeLoad.made  # the recorded count, no new measurement
