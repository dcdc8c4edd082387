"""What a tune directory holds, and the search's defaults. Imports nothing, so ``recmodels info``
and ``recmodels tune --help`` read them without loading the training pipeline."""

__all__ = ["BEST_DIR", "DEFAULT_PRUNE_WARMUP", "DEFAULT_TRIALS", "PLOT_FILE", "SETTINGS_FILE",
           "STUDY_FILE", "TABLE_JSON", "TRIALS_DIR"]

SETTINGS_FILE = "tune.json"
"""The search's settings and its inputs' fingerprints (what ``--resume`` checks)."""
STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
BEST_DIR = "best"
TABLE_JSON = "trials.json"
PLOT_FILE = "trials.png"
DEFAULT_TRIALS = 20
"""Trials in a study when neither ``--trials`` nor ``--timeout`` is given."""
DEFAULT_PRUNE_WARMUP = 10
"""Epochs every trial runs before it may be pruned."""
