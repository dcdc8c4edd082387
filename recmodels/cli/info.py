"""``recmodels info PATH``: describe a bundle, a run, a tune directory or interaction data (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import first_line
from ..tuning.layout import BEST_DIR as TUNE_BEST_DIR
from ..tuning.layout import SETTINGS_FILE as TUNE_SETTINGS_FILE
from ..tuning.layout import TABLE_JSON as TUNE_TABLE_FILE
from . import table_options

# Model fields only some kinds have: not shown for the others.
_KIND_FIELDS = {"num_layers": ("neumf", "hybrid"), "dropouts": ("neumf", "hybrid"),
                "pretrained_dim": ("hybrid",)}


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
    from ..runs import COMPLETE_FILE, CONFIG_FILE, METRICS_FILE  # here: --help stays light

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
        kind = model.get("kind", "?")
        other_kinds = tuple(name for name, kinds in _KIND_FIELDS.items() if kind not in kinds)
        lines.append(f"model         {kind}  ({_compact(model, skip=('kind', *other_kinds))})")
        lines.append(f"train         {_compact(config.get('train'))}")
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        if data:
            sources = data.get("sources") or []
            lines.append(f"data          {', '.join(str(s) for s in sources) or '-'}")
            lines.append(
                f"columns       user {data.get('user_col')!r}, item {data.get('item_col')!r}, "
                f"rating {data.get('rating_col')!r}"
                + (f", timestamp {data['timestamp_col']!r}" if data.get("timestamp_col") else "")
                + f"; ratings in [{data.get('rating_min')}, {data.get('rating_max')}]"
                + (f" step {data['rating_step']}" if data.get("rating_step") is not None else "")
                + f", global mean {data.get('global_mean')}"
            )
            if data.get("missing_rating") is not None:
                lines.append(f"not rated     rating {data['missing_rating']:g}: "
                             f"{data.get('missing_rating_dropped', 0):,} rows dropped")
            if isinstance(data.get("csv"), dict):
                csv = data["csv"]
                names = ",".join(map(str, csv.get("columns") or []))
                lines.append("csv           " + (f"sep {csv['sep']!r}, " if csv.get("sep") else "")
                             + ("header row" if csv.get("header", True) else f"no header, columns {names}"))
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


def tune_summary(path: Path) -> tuple[str, dict]:
    """Readable summary of a ``recmodels tune`` directory (its settings, trials and best run)
    and the JSON-able facts behind it; missing or unreadable files are reported, never raised."""
    from ..runs import CONFIG_FILE

    settings, settings_problem = _read_json(path / TUNE_SETTINGS_FILE)
    table, table_problem = _read_json(path / TUNE_TABLE_FILE)
    lines = [f"tune          {path}"]
    recorded = (settings or {}).get("settings") if isinstance((settings or {}).get("settings"), dict) else {}
    if settings is None:
        lines.append(f"settings      none ({settings_problem})")
    else:
        inputs = recorded.get("inputs") if isinstance(recorded.get("inputs"), dict) else {}
        models = recorded.get("model") or []
        lines.append(f"models        {', '.join(map(str, models)) if isinstance(models, list) else models}")
        lines.append("data          " + (", ".join(f"{k} {v}" for k, v in inputs.items() if v) or "-"))
    if table is None:
        lines.append(f"trials        none yet ({table_problem})")
    else:
        rows = [r for r in table.get("trials") or [] if isinstance(r, dict)]
        states: dict = {}
        for row in rows:
            states[row.get("state")] = states.get(row.get("state"), 0) + 1
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items(), key=str))
        lines.append(f"trials        {len(rows)} ({counts})")
        best = table.get("best") if isinstance(table.get("best"), dict) else {}
        if best:
            rmse = best.get("valid_rmse")
            shown = f": valid rmse {rmse:.6g}" if isinstance(rmse, (int, float)) else ""
            lines.append(f"best trial    {best.get('trial')}{shown}")
            lines.append(f"best params   {_compact(best.get('params'))}")
    best_dir = path / TUNE_BEST_DIR
    best_run = None
    if (best_dir / CONFIG_FILE).is_file():
        text, best_run = run_summary(best_dir)
        lines.append(text)
    facts = {"path": str(path), "settings": settings, "trials": table, "best_run": best_run}
    return "\n".join(lines), facts


@click.command(
    "info",
    epilog="""\b
Examples:
  recmodels info ratings.csv --item-col book_id
  recmodels info ratings.parquet --timestamp-col ts --rating-range 1 5
  recmodels info goodreads_interactions.csv --item-col book_id --missing-rating 0
  recmodels info ml-100k/u.data --sep tab --no-header --columns user_id,item_id,rating,timestamp
  recmodels info runs/neumf          # a training run
  recmodels info tuned/mf            # a tune directory (its trials and best run)
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
@table_options.missing_rating_option
@table_options.csv_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(path, user_col, item_col, rating_col, timestamp_col, rating_range, missing_rating, sep, header,
         columns, as_json):
    """Describe PATH: a scoring bundle, a training run or tune directory, or interaction data.

    \b
    - a directory with manifest.json: the bundle's summary (after verifying it);
    - a directory with config.json: the run's model, settings, best epoch and test metrics;
    - a directory with tune.json: the search's models, trials and best run;
    - anything else: interaction data (.csv, .csv.gz, .parquet or a Parquet directory; other
      delimited text with --sep), validated like training input, and its statistics: users,
      items, interactions, density, rating histogram and per-user / per-item count quantiles,
      with a warning when one rating value looks like "not rated" (use --missing-rating).
    """
    from ..bundle import MANIFEST_FILE, Bundle  # here, not at import: --help stays light
    from ..runs import CONFIG_FILE

    if path.is_dir() and (path / MANIFEST_FILE).is_file():
        bundle = Bundle.load(path)
        if as_json:
            click.echo(json.dumps(bundle.manifest.to_dict(), indent=2, sort_keys=True))
        else:
            click.echo(bundle.summary())
        return
    for marker, summary in ((CONFIG_FILE, run_summary), (TUNE_SETTINGS_FILE, tune_summary)):
        if path.is_dir() and (path / marker).exists():
            text, facts = summary(path)
            click.echo(json.dumps(facts, indent=2, sort_keys=True) if as_json else text)
            return
    from ..data import Columns, describe, format_stats, rating_warnings, read_interactions

    dialect = table_options.dialect(sep, header, columns)
    names = Columns(user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col)
    df = read_interactions(path, names, rating_range=tuple(rating_range) if rating_range else None,
                           missing_rating=missing_rating, dialect=dialect)
    stats = describe(df, names)
    if as_json:
        click.echo(json.dumps(stats, indent=2, sort_keys=True, default=str))
    else:
        click.echo(f"data          {path}")
        click.echo(format_stats(stats))
    for warning in rating_warnings(stats):
        click.echo(f"warning: {warning}", err=True)
