"""``make demo``: the main job end to end on built-in sample data.

Generates synthetic ratings (with a pretrained item-embedding table), trains NeuMF,
exports it to an ONNX bundle and scores a candidate file with it, through the same
``recmodels`` commands a user would type. Prints each command and where the results are.

Run with ``python -m recmodels.demo --out demo-output``.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd


def _run(args: list[str]) -> None:
    from .cli import cli

    click.echo(click.style("$ recmodels " + shlex.join(args), bold=True))
    try:
        cli.main(args=args, prog_name="recmodels", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


def _candidates(ratings: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """(user, item) pairs to score: random known pairs plus a few never-seen ids."""
    rng = np.random.default_rng(seed)
    users = ratings["user_id"].unique()
    items = ratings["item_id"].unique()
    pairs = pd.DataFrame(
        {"user_id": rng.choice(users, n_rows), "item_id": rng.choice(items, n_rows)}
    )
    unknown = rng.choice(n_rows, max(1, n_rows // 1000), replace=False)
    pairs.loc[unknown, "item_id"] = items.max() + 1 + np.arange(unknown.size)
    return pairs


@click.command()
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(),
              help="Where the data, run, bundle and scores go (replaced if it exists).")
@click.option("--epochs", default=20, show_default=True,
              help="Most training epochs (early stopping usually ends sooner).")
@click.option("--rows", default=1_000_000, show_default=True, help="Candidate pairs to score.")
@click.option("--model", "model_kind", type=click.Choice(["mf", "neumf", "hybrid"]), default="neumf",
              show_default=True, help="Which model to train.")
@click.option("--seed", default=0, show_default=True)
def main(out_dir: str, epochs: int, rows: int, model_kind: str, seed: int) -> None:
    """Run sample data -> train -> export -> score and print where everything is."""
    from .datasets import sample_data

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    paths = sample_data(out / "data")
    ratings = pd.read_csv(paths["ratings"])
    candidates = out / "data" / "candidates.parquet"
    _candidates(ratings, rows, seed).to_parquet(candidates, index=False)
    click.echo(f"sample data: {paths['ratings']} ({len(ratings):,} ratings), "
               f"item embeddings {paths['item_embeddings']}, candidates {candidates}\n")

    run_dir, bundle_dir, scores = out / "run", out / "bundle", out / "scores.parquet"
    hybrid = ["--item-embeddings", str(paths["item_embeddings"])] if model_kind == "hybrid" else []
    _run(["train", "--data", str(paths["ratings"]), "--model", model_kind, *hybrid,
          # the sample has 42k training rows: smaller batches than the 16k default pay here
          "--epochs", str(epochs), "--batch-size", "4096", "--seed", str(seed),
          "--out", str(run_dir)])
    _run(["export", str(run_dir), "--format", "onnx", "--out", str(bundle_dir)])
    _run(["info", str(bundle_dir)])
    _run(["score", str(bundle_dir), str(candidates), str(scores),
          "--report", str(out / "score-report.json")])

    import json

    planted = json.loads(Path(paths["meta"]).read_text())
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    closed = (planted["global_mean_rmse"] - test["rmse"]) / (
        planted["global_mean_rmse"] - planted["best_rmse"]
    )
    click.echo(
        f"\ntest RMSE {test['rmse']:.4f} vs planted best {planted['best_rmse']:.4f} and "
        f"global-mean {planted['global_mean_rmse']:.4f}: {100 * closed:.0f}% of the gap closed"
    )
    click.echo("\nresults:")
    click.echo(f"  run directory  {run_dir}  (metrics.json, loss.png, model.pt, train.log)")
    click.echo(f"  bundle         {bundle_dir}  (model.onnx, user_ids/item_ids.parquet, manifest.json)")
    click.echo(f"  scores         {scores}  (report: {out / 'score-report.json'})")


if __name__ == "__main__":  # pragma: no cover
    main()
