"""``recmodels info PATH``: describe a bundle, a run directory or interaction data (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..bundle import MANIFEST_FILE, Bundle
from ..errors import first_line
from ..runs import COMPLETE_FILE, CONFIG_FILE, METRICS_FILE


def _compact(mapping: dict | None, skip: tuple = ()) -> str:
    if not isinstance(mapping, dict) or not mapping:
        return "-"
    parts = []
    for key in sorted(mapping):
        if key in skip:
            continue
        value = mapping[key]
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, dict):
            value = "{" + _compact(value) + "}"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    """``(object, None)`` or ``(None, reason)``; never raises."""
    if not path.is_file():
        return None, f"{path.name} missing"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} unreadable ({first_line(exc)})"
    if not isinstance(obj, dict):
        return None, f"{path.name} is not a JSON object"
    return obj, None


def run_summary(path: Path) -> tuple[str, dict]:
    """Readable summary of a run directory and the JSON-able facts behind it.

    Missing or unreadable files are reported in the text, never raised.
    """
    config, config_problem = _read_json(path / CONFIG_FILE)
    metrics, metrics_problem = _read_json(path / METRICS_FILE)
    complete = (path / COMPLETE_FILE).is_file()
    lines = [
        f"run           {path}",
        "status        "
        + ("complete" if complete else "incomplete (no COMPLETE marker: training did not finish "
                                       "or is still running)"),
    ]
    if config is None:
        lines.append(f"config        none ({config_problem})")
    else:
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        lines.append(f"model         {model.get('kind', '?')}  ({_compact(model, skip=('kind',))})")
        lines.append(f"train         {_compact(config.get('train'))}")
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        if data:
            sources = data.get("sources") or []
            lines.append(f"data          {', '.join(str(s) for s in sources) or '-'}")
            lines.append(
                f"columns       user {data.get('user_col')!r}, item {data.get('item_col')!r}, "
                f"rating {data.get('rating_col')!r}"
                + (f", timestamp {data['timestamp_col']!r}" if data.get("timestamp_col") else "")
                + f"; ratings in [{data.get('rating_min')}, {data.get('rating_max')}], "
                f"global mean {data.get('global_mean')}"
            )
            lines.append(f"split         {_compact(data.get('split'))}")
        if config.get("recmodels_version"):
            lines.append(f"version       recmodels {config['recmodels_version']}")
    if metrics is None:
        lines.append(f"metrics       none ({metrics_problem})")
    else:
        history = metrics.get("history") or []
        best = metrics.get("best_epoch")
        lines.append(f"epochs        {len(history)} run, best epoch {best if best is not None else '-'}")
        row = next((h for h in history if isinstance(h, dict) and h.get("epoch") == best), None)
        if row:
            lines.append(f"best epoch    {_compact(row, skip=('epoch',))}")
        for split in ("valid", "test"):
            if isinstance(metrics.get(split), dict):
                lines.append(f"{split + ' metrics':<14}{_compact(metrics[split])}")
        if not isinstance(metrics.get("test"), dict):
            lines.append("test metrics  none yet")
    facts = {"path": str(path), "complete": complete, "config": config, "metrics": metrics}
    return "\n".join(lines), facts


@click.command(
    "info",
    epilog="""\b
Examples:
  recmodels info ratings.csv --item-col book_id
  recmodels info ratings.parquet --timestamp-col ts --rating-range 1 5
  recmodels info runs/neumf          # a training run
  recmodels info bundles/neumf       # an exported bundle (verifies checksums)
""",
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--user-col", default="user_id", show_default=True, help="User id column (data).")
@click.option("--item-col", default="item_id", show_default=True, help="Item id column (data).")
@click.option("--rating-col", default="rating", show_default=True, help="Rating column (data).")
@click.option("--timestamp-col", default=None, help="Optional timestamp column (data).")
@click.option(
    "--rating-range",
    nargs=2,
    type=float,
    default=None,
    metavar="MIN MAX",
    help="Also check every rating lies in [MIN, MAX], as training does (data; off by default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(path, user_col, item_col, rating_col, timestamp_col, rating_range, as_json):
    """Describe PATH: a scoring bundle, a training run directory, or interaction data.

    \b
    - a directory with manifest.json: the bundle's summary (after verifying it);
    - a directory with config.json: the run's model, settings, best epoch and test metrics;
    - anything else: interaction data (.csv, .csv.gz, .parquet or a Parquet directory),
      validated like training input, and its statistics: users, items, interactions,
      density, rating histogram and per-user / per-item count quantiles.
    """
    if path.is_dir() and (path / MANIFEST_FILE).is_file():
        bundle = Bundle.load(path)
        if as_json:
            click.echo(json.dumps(bundle.manifest.to_dict(), indent=2, sort_keys=True))
        else:
            click.echo(bundle.summary())
        return
    if path.is_dir() and (path / CONFIG_FILE).exists():
        text, facts = run_summary(path)
        click.echo(json.dumps(facts, indent=2, sort_keys=True) if as_json else text)
        return
    from ..data import Columns, describe, format_stats, read_interactions

    columns = Columns(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    df = read_interactions(path, columns, rating_range=tuple(rating_range) if rating_range else None)
    stats = describe(df, columns)
    if as_json:
        click.echo(json.dumps(stats, indent=2, sort_keys=True, default=str))
    else:
        click.echo(f"data          {path}")
        click.echo(format_stats(stats))
