"""``recmodels train``: a good run, and one clear line (exit 1, no run dir) per bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from recmodels.cli import cli  # noqa: E402
from recmodels.datasets import make_ratings  # noqa: E402
from recmodels.runs import load_run  # noqa: E402

FAST = ["--epochs", "2", "--batch-size", "512", "--quiet", "--embedding-dim", "4",
        "--num-layers", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def synthetic():
    return make_ratings(120, 80, 3000, embedding_dim=6, seed=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("data")
    ratings = root / "ratings.csv"
    synthetic.ratings.to_csv(ratings, index=False)
    items = root / "items.csv"
    synthetic.item_embeddings.to_csv(items, index=False)
    return {"ratings": ratings, "items": items, "root": root}


def invoke(*args):
    return CliRunner().invoke(cli, ["train", *map(str, args)])


def assert_one_line_failure(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_train_writes_a_complete_run(files, tmp_path):
    out = tmp_path / "run"
    result = invoke("--data", files["ratings"], "--model", "neumf", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "test: rmse" in result.output and str(out) in result.output
    for name in ("config.json", "model.pt", "last.pt", "user_ids.parquet", "item_ids.parquet",
                 "split/train.parquet", "split/valid.parquet", "split/test.parquet",
                 "metrics.json", "loss.png", "train.log", "COMPLETE"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"rmse", "mae", "mse", "hit_accuracy"}
    assert len(metrics["history"]) == 2 and metrics["best_epoch"] in (1, 2)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["kind"] == "neumf" and config["train"]["epochs"] == 2
    assert config["data"]["user_col"] == "user_id"
    last = torch.load(out / "last.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "best", "patience_left", "rng", "history"} <= set(last)
    run = load_run(out)
    assert not run.model.training and len(run.user_encoder) == run.model_config.n_users
    assert "epoch 1/2" in (out / "train.log").read_text()


def test_hybrid_and_toml_config(files, tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text(f'model = "hybrid"\nitem-embeddings = "{files["items"]}"\nepochs = 5\n'
                    'embedding_fill = "mean"\n')
    out = tmp_path / "run"
    result = invoke("--config", toml, "--data", files["ratings"], "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["kind"] == "hybrid" and config["model"]["pretrained_dim"] == 6
    assert config["train"]["epochs"] == 2  # the flag overrides the file
    assert config["data"]["item_embeddings"]["fill"] == "mean"
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["item_pretrained"].shape == (config["model"]["n_items"], 6)


@pytest.mark.parametrize("line, fragment", [
    ('rating_range = ["a", 5]', "rating_range must be [MIN, MAX]"),
    ('use_bias = "no"', "use_bias must be true or false"),
    ('epochs = "3"', "epochs must be an integer"),
    ("lr = true", "lr must be a number"),
])
def test_toml_values_of_the_wrong_type_are_one_line(files, tmp_path, line, fragment):
    toml = tmp_path / "train.toml"
    toml.write_text(line + "\n")
    out = tmp_path / "run"
    result = invoke("--config", toml, "--data", files["ratings"], "--out", out)
    assert_one_line_failure(result, "train.toml", fragment)
    assert not out.exists()


def test_pre_split_files(files, synthetic, tmp_path):
    df = synthetic.ratings.sample(frac=1, random_state=0)
    parts = {}
    for name, chunk in (("train", df[:2100]), ("valid", df[2100:2700]), ("test", df[2700:])):
        parts[name] = tmp_path / f"{name}.parquet"
        chunk.to_parquet(parts[name], index=False)
    out = tmp_path / "run"
    result = invoke("--train", parts["train"], "--valid", parts["valid"], "--test", parts["test"],
                    "--model", "mf", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["data"]["split"]["method"] == "given"


@pytest.mark.parametrize("model, extra", [("mf", []), ("neumf", ["--precision", "bf16"])])
def test_resume_continues_to_the_same_result(files, tmp_path, model, extra):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["--data", files["ratings"], "--model", model, "--patience", "10", *extra, *FAST]
    assert invoke(*common, "--out", full, "--epochs", "3").exit_code == 0
    if extra:  # the precision is part of the run, so a resume keeps it
        assert json.loads((full / "config.json").read_text())["train"]["precision"] == "bf16"
    assert invoke(*common, "--out", part, "--epochs", "1").exit_code == 0
    result = invoke("--out", part, "--resume", "--epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(part / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((full / "metrics.json").read_text())["history"]
    hb = json.loads((part / "metrics.json").read_text())["history"]
    assert [h["valid_mse"] for h in ha] == [h["valid_mse"] for h in hb]


def test_existing_run_dir_is_refused_unless_overwrite(files, tmp_path):
    out = tmp_path / "run"
    args = ["--data", files["ratings"], "--model", "mf", "--out", out, *FAST]
    assert invoke(*args).exit_code == 0
    before = (out / "model.pt").stat().st_mtime_ns
    assert_one_line_failure(invoke(*args), "already exists", "--overwrite")
    assert (out / "model.pt").stat().st_mtime_ns == before
    assert invoke(*args, "--overwrite").exit_code == 0


def test_overwrite_refuses_a_directory_that_is_not_a_run(files, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    result = invoke("--data", files["ratings"], "--out", out, "--overwrite", *FAST)
    assert_one_line_failure(result, "not a recmodels run directory")
    assert (out / "thesis.tex").is_file()


def test_resume_without_a_run(tmp_path):
    assert_one_line_failure(invoke("--out", tmp_path / "nothing", "--resume"), "nothing to resume")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir(files, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke("--data", files["ratings"], "--out", locked / "run", *FAST)
        assert_one_line_failure(result, "not writable")
        assert not (locked / "run").exists()
    finally:
        locked.chmod(0o700)


def test_output_under_a_file_is_one_line(files, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("--data", files["ratings"], "--out", blocker / "run", *FAST)
    assert_one_line_failure(result, "not writable")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def good_rows(n=60, extra=""):
    rng = np.random.default_rng(0)
    rows = [f"{u},{i},{r}{extra}" for u, i, r in zip(rng.integers(0, 8, n), rng.integers(0, 8, n),
                                                     rng.integers(1, 6, n), strict=True)]
    return rows


BAD_DATA = {
    "empty file": ("", ["empty"]),
    "header only": ("user_id,item_id,rating\n", ["no data rows"]),
    "missing column": ("user_id,item_id\n1,2\n", ["rating"]),
    "bad rating": ("user_id,item_id,rating\n1,2,4\n1,3,great\n", ["rating"]),
    "out of range": ("user_id,item_id,rating\n1,2,4\n1,3,9\n", ["rating", "9"]),
    "null id": ("user_id,item_id,rating\n1,2,4\n,3,5\n", ["user_id"]),
    "too few rows": ("user_id,item_id,rating\n1,2,4\n1,3,5\n", ["too few"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_line_and_leaves_no_run(tmp_path, case):
    text, fragments = BAD_DATA[case]
    data = write(tmp_path, "ratings.csv", text)
    out = tmp_path / "run"
    assert_one_line_failure(invoke("--data", data, "--out", out, *FAST), *fragments)
    assert not out.exists()


def test_missing_file(tmp_path):
    out = tmp_path / "run"
    assert_one_line_failure(invoke("--data", tmp_path / "nope.csv", "--out", out, *FAST), "nope.csv")
    assert not out.exists()


def test_duplicates_policy_error(tmp_path):
    rows = "\n".join(good_rows()) + "\n1,1,3\n1,1,4\n"
    data = write(tmp_path, "ratings.csv", "user_id,item_id,rating\n" + rows)
    out = tmp_path / "run"
    result = invoke("--data", data, "--out", out, "--duplicates", "error", *FAST)
    assert_one_line_failure(result, "duplicate")
    assert not out.exists()


BAD_EMBEDDINGS = {
    "wrong width": (None, ["width"]),
    "nan": ("item_id,e0,e1\n{i},0.1,nan\n", ["nan"]),
    "duplicate ids": ("item_id,e0,e1\n{i},0.1,0.2\n{i},0.3,0.4\n", ["duplicate"]),
    "non-numeric": ("item_id,e0,e1\n{i},0.1,abc\n", ["e1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_EMBEDDINGS))
def test_bad_item_embeddings(files, synthetic, tmp_path, case):
    template, fragments = BAD_EMBEDDINGS[case]
    item = int(synthetic.ratings["item_id"].iloc[0])
    if template is None:  # rows of different width
        path = write(tmp_path, "items.csv", f"item_id,e0,e1\n{item},0.1,0.2\n{item + 1},0.3\n")
    else:
        path = write(tmp_path, "items.csv", template.format(i=item))
    out = tmp_path / "run"
    result = invoke("--data", files["ratings"], "--model", "hybrid", "--item-embeddings", path,
                    "--out", out, *FAST)
    assert_one_line_failure(result, *([] if template is None else fragments))
    assert not out.exists()


def test_hybrid_needs_embeddings(files, tmp_path):
    out = tmp_path / "run"
    result = invoke("--data", files["ratings"], "--model", "hybrid", "--out", out, *FAST)
    assert_one_line_failure(result, "--item-embeddings")
    assert not out.exists()


def test_usage_errors_exit_2(files, tmp_path):
    assert invoke("--data", files["ratings"], "--epochs", "0", "--out", tmp_path / "r").exit_code == 2
    assert invoke("--data", files["ratings"], "--model", "svd", "--out", tmp_path / "r").exit_code == 2
    assert invoke("--data", files["ratings"]).exit_code == 2
    assert not (tmp_path / "r").exists()


def test_bad_toml_and_device(files, tmp_path):
    toml = write(tmp_path, "train.toml", "colour = 'blue'\n")
    assert_one_line_failure(invoke("--config", toml, "--data", files["ratings"],
                                   "--out", tmp_path / "r"), "colour")
    if not torch.cuda.is_available():
        result = invoke("--data", files["ratings"], "--device", "cuda", "--out", tmp_path / "r")
        assert_one_line_failure(result, "cuda", "not available")
    assert not (tmp_path / "r").exists()

