"""How many CPU threads training uses when none is given: the cores other processes leave free.

torch's threads wait for each other at every operation, so one thread on a core another
process holds slows every step down: on a 2-core machine other jobs kept busy, 2 threads
trained MF 11-14x and NeuMF 13-16x slower per epoch than 1 (``docs/benchmarks.md``,
``benchmarks/threads_oversubscription.py``).
Without ``TrainConfig.num_threads``, the trainer therefore measures the CPU time other
processes take on this process's cores (Linux ``/proc/stat``, less this process's own time)
when a fit starts, and uses the cores left free for the whole fit (a resume keeps the count:
torch's results depend on it). Torch-free.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

# A core counts as free while other processes take less than this share of it: one thread too
# many costs far more (a thread waiting for a time slice stalls every operation) than one too
# few (at most that thread's share of the work).
FREE_BELOW = 0.25
START_WINDOW_S = 0.1


def cpu_set() -> list[int]:
    """The ids of the CPUs this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """The cgroup CPU limit in cores (``docker --cpus``), or ``None`` when there is none."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # cgroup v1
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, within a cgroup CPU quota."""
    cores = len(cpu_set())
    quota = cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


class CpuLoad:
    """CPU time other processes take on this process's cores, between two calls (Linux).

    Parameters
    ----------
    limit : int
        The most threads to use (torch's setting, within :func:`available_cores`).
    stat : path-like
        The kernel's CPU counters (a test gives another file).
    """

    def __init__(self, limit: int, stat: str | os.PathLike = "/proc/stat"):
        self.cpus = cpu_set()
        self.limit = max(1, min(int(limit), available_cores()))
        self.stat = Path(stat)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        """(seconds the CPUs of :attr:`cpus` were busy, this process's CPU seconds, wall time)."""
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        wanted, busy = {f"cpu{i}" for i in self.cpus}, 0
        for line in lines:
            fields = line.split()
            if fields and fields[0] in wanted:
                # user nice system idle iowait irq softirq steal ...: all but idle and iowait
                # (steal counts: the hypervisor kept that time)
                values = [int(v) for v in fields[1:9]]
                busy += sum(values) - values[3] - values[4]
        own = os.times()
        return busy / self.tick, own.user + own.system, time.monotonic()

    def others(self) -> float | None:
        """Cores' worth of CPU other processes used since the last call (``None``: unknown)."""
        now, last = self._sample(), self.last
        self.last = now
        if now is None or last is None or now[2] <= last[2]:
            return None
        return max(0.0, (now[0] - last[0]) - (now[1] - last[1])) / (now[2] - last[2])

    def threads(self, others: float | None) -> int:
        """The threads to use when other processes take ``others`` cores of ours."""
        if others is None:
            return self.limit
        free = math.floor(len(self.cpus) - others + FREE_BELOW)
        return max(1, min(self.limit, free))

    def start(self, window: float = START_WINDOW_S) -> tuple[int, float | None]:
        """The threads for the first epoch, from ``window`` seconds of the others' CPU use."""
        if self.last is None:
            return self._from_loadavg()
        time.sleep(window)
        others = self.others()
        return self.threads(others), others

    def _from_loadavg(self) -> tuple[int, float | None]:
        # no /proc/stat (macOS): the 1-minute load before training starts stands for the others
        try:
            others = os.getloadavg()[0]
        except (AttributeError, OSError):
            return self.limit, None
        return self.threads(others), others


__all__ = ["CpuLoad", "available_cores", "cpu_quota", "cpu_set"]
