"""recmodels.scoring (and `recmodels score`) must work where torch and scikit-learn cannot be
imported: a meta-path finder blocks them in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bundle_factory import make_bundle

REPO = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent("""
    import sys

    class Block:
        BLOCKED = ("torch", "sklearn", "scikit_learn")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"blocked import of {name} in a torch-free test")
            return None

    sys.meta_path.insert(0, Block())
""")

SCRIPT = BLOCKER + textwrap.dedent("""
    import numpy as np, pandas as pd
    import recmodels.scoring as scoring
    from recmodels.cli import main

    bundle, out = sys.argv[1], sys.argv[2]
    frame = pd.DataFrame({"user_id": [1000, 1007, 1], "item_id": [5, 8, 8]})
    got = scoring.Scorer(bundle, device="auto").score_frame(frame)
    assert got["known"].tolist() == [True, True, False], got
    pd.DataFrame(frame).to_csv(out + ".in.csv", index=False)
    try:
        main(["score", bundle, out + ".in.csv", out, "--device", "cpu", "-q"])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    assert len(pd.read_parquet(out)) == 3
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    print("ok", list(got["score"].round(4)))
""")


def test_scoring_imports_neither_torch_nor_sklearn(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="neumf", folded=True)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(fb.path), str(tmp_path / "o.parquet")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
