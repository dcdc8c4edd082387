"""A small threaded pipeline: stages joined by bounded queues, order preserved.

Each stage runs in its own thread and handles items one at a time, so items leave in the order
they came in. The queues are bounded, so memory is bounded by ``depth`` items per stage however
large the input is. onnxruntime and pyarrow release the GIL in their heavy parts, which is what
lets reading, id mapping, inference and writing overlap.

The first exception in any stage stops every stage and is re-raised in the consumer's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

_END = object()


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


class _Stopped(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def pipelined(
    source: Iterable, stages: list[Callable], *, depth: int = 2, name: str = "recmodels-score"
) -> Iterator:
    """Yield ``stages[-1](...stages[0](item))`` for each item of ``source``, in order.

    ``source`` is iterated in a thread of its own and each stage runs in its own thread. A stage
    may return None to drop an item. Closing the generator (or an exception in the consumer)
    stops the threads.
    """
    stop = threading.Event()
    queues = [queue.Queue(maxsize=depth) for _ in range(len(stages) + 1)]

    def produce():
        try:
            for item in source:
                _put(queues[0], item, stop)
            _put(queues[0], _END, stop)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            _forward_failure(queues[0], exc, stop)

    def work(fn, q_in, q_out):
        try:
            while True:
                item = _get(q_in, stop)
                if item is _END or isinstance(item, _Failure):
                    _put(q_out, item, stop)
                    return
                result = fn(item)
                if result is not None:
                    _put(q_out, result, stop)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001
            _forward_failure(q_out, exc, stop)

    threads = [threading.Thread(target=produce, name=f"{name}-read", daemon=True)]
    for i, fn in enumerate(stages):
        threads.append(
            threading.Thread(
                target=work, args=(fn, queues[i], queues[i + 1]), name=f"{name}-{i}", daemon=True
            )
        )
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _get(queues[-1], stop)
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def _forward_failure(q: queue.Queue, exc: BaseException, stop: threading.Event) -> None:
    # Make room if needed: the consumer only needs to see the failure.
    while True:
        try:
            q.put_nowait(_Failure(exc))
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
        if stop.is_set():
            return
