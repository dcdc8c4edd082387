"""``recmodels export RUN_DIR --format onnx --out BUNDLE_DIR``."""

from __future__ import annotations

import click

from ..export import DEFAULT_OPSET, FORMATS  # torch- and onnx-free at import


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option(
    "--format", "fmt", default="onnx", show_default=True, metavar="FORMAT",
    help="Export format (only 'onnx').",
)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=str), help="Bundle directory.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle directory.")
@click.option(
    "--no-fold", "no_fold", is_flag=True,
    help="Keep the model's structure instead of folding it for inference (for comparisons).",
)
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ai.onnx opset.")
@click.option(
    "--fallback-score", type=float, default=None,
    help="Score for unknown ids [default: the training ratings' global mean].",
)
@click.option(
    "--embed-encoders", is_flag=True,
    help="Also write model_ids.onnx: raw user_id/item_id in (mapped inside with ai.onnx.ml "
    "LabelEncoder), score and known out; unknown ids get the fallback score.",
)
def export(run_dir, fmt, out_dir, overwrite, no_fold, opset, fallback_score, embed_encoders):
    """Export a trained run (RUN_DIR) to a verified ONNX scoring bundle.

    The graph is checked with onnx.checker and against the torch model on 10,000 random
    pairs (max |onnx - torch| <= 1e-5) before the bundle is moved into place.
    """
    if fmt.lower() not in FORMATS:
        raise click.ClickException(f"unsupported --format {fmt!r}; supported: {', '.join(FORMATS)}")
    from ..export import export_onnx

    path = export_onnx(
        run_dir,
        out_dir,
        overwrite=overwrite,
        fold=not no_fold,
        opset=opset,
        embed_encoders=embed_encoders,
        fallback_score=fallback_score,
    )
    from ..bundle import Bundle

    bundle = Bundle.load(path)
    manifest = bundle.manifest
    parity = manifest.parity
    click.echo(
        f"wrote {path} ({bundle.model_kind}, {'folded' if manifest.model.folded else 'unfolded'}, "
        f"opset {manifest.graph.opset}); parity max |onnx - torch| = {parity.max_abs_diff:.2e} "
        f"over {parity.n_pairs} pairs"
    )
    if parity.raw_ids is not None:
        raw = parity.raw_ids
        click.echo(
            f"wrote {bundle.raw_ids_model_path.name} (raw ids); max |model_ids - model| = "
            f"{raw.max_abs_diff:.2e}, {raw.n_unknown} unknown pairs scored {bundle.fallback_score:g}"
        )
