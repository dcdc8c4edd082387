"""The study's storage (``OUT/study.db``, Optuna's SQLite storage): checked before the data is
read, opened or resumed, and tidied after an interrupt (what counts towards ``--trials``)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

from ..errors import RecmodelsError, RunDirError, first_line
from .layout import STUDY_FILE, TRIALS_DIR
from .results import is_interrupted

STUDY_NAME = "recmodels-tune"


def unreadable_study(path: Path, exc: BaseException | str) -> RunDirError:
    """The one line for a study that cannot be read, naming the file and what to do."""
    reason = exc if isinstance(exc, str) else first_line(exc)
    return RunDirError(f"{path}: the study cannot be read ({reason}); start a new search with "
                       "--overwrite, or choose another --out")


def check_study_file(path: Path) -> None:
    """Refuse a missing, empty or corrupt ``study.db`` before the data is read (one line)."""
    if not path.is_file() or path.stat().st_size == 0:
        raise unreadable_study(path, "missing" if not path.exists() else "empty file")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            names = {row[0] for row in db.execute("SELECT study_name FROM studies")}
    except sqlite3.Error as exc:
        raise unreadable_study(path, exc) from None
    if check != "ok":
        raise unreadable_study(path, f"quick_check: {check}")
    if STUDY_NAME not in names:
        raise unreadable_study(path, f"it holds no study named {STUDY_NAME!r}")


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the SQLite storage (sqlalchemy or sqlite3)."""
    return type(exc).__module__.split(".")[0] in ("sqlalchemy", "sqlite3")


def open_study(out: Path, optuna, resume: bool):
    """The storage and the study (created, or loaded to resume; failed interrupted trials marked)."""
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY_FILE).resolve()}")
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="minimize",
                                    load_if_exists=True)
        tidy_interrupted(study, out, optuna)
    except RecmodelsError:
        raise
    except Exception as exc:
        if not (is_storage_error(exc) or isinstance(exc, (RuntimeError, ValueError, KeyError))):
            raise
        raise unreadable_study(out / STUDY_FILE, exc) from None
    return storage, study


def counts_as_done(trial, optuna) -> bool:
    """Whether a trial counts towards ``--trials``: finished, and not interrupted."""
    return trial.state.is_finished() and not is_interrupted(trial, optuna)


def tidy_interrupted(study, out: Path, optuna) -> None:
    """Tidy what an interrupted search left, so that a resume continues cleanly.

    Trials left RUNNING (a kill) are marked failed; an interrupted trial's run directory (it
    may have been renamed into place just before the interrupt) and partial directories are
    removed; an interrupted starting configuration is queued again.
    """
    state = optuna.trial.TrialState
    for t in study.trials:
        if t.state == state.RUNNING:
            study.tell(t.number, state=state.FAIL, skip_if_finished=True)
    trials = study.trials
    queued = {json.dumps(t.system_attrs.get("fixed_params"), sort_keys=True) for t in trials
              if "start" in t.user_attrs and not is_interrupted(t, optuna)}
    for t in trials:
        if not is_interrupted(t, optuna):
            continue
        shutil.rmtree(out / TRIALS_DIR / f"{t.number:04d}", ignore_errors=True)
        fixed = t.system_attrs.get("fixed_params")
        key = json.dumps(fixed, sort_keys=True)
        if "start" in t.user_attrs and fixed is not None and key not in queued:
            study.enqueue_trial(fixed, user_attrs={"start": t.user_attrs["start"]})
            queued.add(key)
    for partial in (out / TRIALS_DIR).glob(".*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)
