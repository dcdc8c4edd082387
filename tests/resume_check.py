"""Kill-and-resume check shared by the training tests: fit once without a stop, once stopped after
an epoch and resumed from its saved state in a fresh model under another RNG state."""

from __future__ import annotations

import pytest
import torch

from recmodels.training import Trainer


class Interrupt(Exception):
    """Raised from ``on_epoch_end`` to stop a fit as a kill would."""


def uninterrupted_and_resumed(make_model, config, train, valid, device, stop_epoch: int = 2):
    """``(full, resumed)`` trainers: ``make_model(0)`` fitted straight through, and the same fit
    stopped after ``stop_epoch`` then resumed into ``make_model(99)`` from its last state."""
    full = Trainer(make_model(0), config, device, log=None, progress=False)
    full.fit(train, valid)
    saved = {}

    def stop(trainer, record, improved):
        saved["last"] = trainer.state_dict()
        saved["best"] = trainer.best_state_dict
        if record.epoch == stop_epoch:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(make_model(0), config, device, log=None, progress=False, on_epoch_end=stop).fit(train, valid)
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG state
    resumed = Trainer(make_model(99), config, device, log=None, progress=False)
    resumed.load_state_dict(saved["last"], best_state_dict=saved["best"])
    resumed.fit(train, valid)
    return full, resumed
