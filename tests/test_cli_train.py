"""``recmodels train``: a good run, and one clear line (exit 1, no run dir) per bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_failure as assert_one_line

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
    assert_one_line(result, *fragments, ignore_case=True)


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
    # the implicit parts were judged after epoch 1 (kept or dropped), and the log says so
    assert metrics["implicit_probe"]["epoch"] == 1 and isinstance(metrics["implicit_probe"]["kept"], bool)
    assert "implicit parts after epoch 1" in (out / "train.log").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["kind"] == "neumf" and config["train"]["epochs"] == 2
    assert config["data"]["user_col"] == "user_id"
    # the implicit item part is on by default, its N the distinct training pairs (issue 24)
    train_pairs = pd.read_parquet(out / "split" / "train.parquet")
    assert config["model"]["implicit"] == "item"
    assert config["model"]["rated_pairs"] == len(train_pairs.iloc[:, :2].drop_duplicates())
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
    "out of range": ("user_id,item_id,rating\n1,2,4\n1,3,9\n", ["rating", "9", "--rating-range"]),
    "null id": ("user_id,item_id,rating\n1,2,4\n,3,5\n", ["user_id"]),
    "too few rows": ("user_id,item_id,rating\n1,2,4\n1,3,5\n", ["too few"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_line_and_leaves_no_run(tmp_path, case):
    text, fragments = BAD_DATA[case]
    data = write(tmp_path, "ratings.csv", text)
    out = tmp_path / "run"
    given = ["--rating-range", "1", "5"] if case == "out of range" else []  # else read from the data
    assert_one_line_failure(invoke("--data", data, "--out", out, *given, *FAST), *fragments)
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



# -- defaults come from the config dataclasses (issue 8) ------------------------------------------
def test_option_defaults_and_help_come_from_the_config_dataclasses():
    import dataclasses

    from recmodels.cli.train import OPTIONS, default_text
    from recmodels.cli.train import train as command
    from recmodels.models import ModelConfig
    from recmodels.tables import CsvDialect
    from recmodels.training import TrainConfig
    from recmodels.training.setup import DataConfig

    fields = {"model": {f.name: f.default for f in dataclasses.fields(ModelConfig)},
              "train": {f.name: f.default for f in dataclasses.fields(TrainConfig)},
              "data": {f.name: f.default for f in dataclasses.fields(DataConfig)},
              "csv": {f.name: f.default for f in dataclasses.fields(CsvDialect)}}
    fields["model"]["kind"] = "neumf"
    params = {p.name: p for p in command.params}
    covered = set()
    for opt in OPTIONS:
        if opt.section in fields:
            assert params[opt.name].default == fields[opt.section][opt.field], opt.name
            covered.add((opt.section, opt.field))
    # every field a user sets has an option
    assert {("train", f) for f in fields["train"]} <= covered
    assert {("model", f) for f in ModelConfig.user_fields()} <= covered
    assert {("data", f) for f in fields["data"] if f != "csv"} <= covered
    assert {("csv", f) for f in fields["csv"]} <= covered  # DataConfig.csv
    help_text = invoke("--help").output
    assert "[default: 200]" in help_text and "[default: 0.7]" in help_text
    assert default_text(next(o for o in OPTIONS if o.name == "rating_range")) == \
        "min and max of the training ratings"


def test_train_help_needs_no_torch():
    import subprocess
    import sys

    script = ("import sys; sys.modules['torch'] = None\n"
              "from recmodels.cli import main\n"
              "main(['train', '--help'])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--batch-size" in proc.stdout and "[default: 200]" in proc.stdout


def test_gpu_is_accepted_as_cuda(files, tmp_path):
    result = invoke("--data", files["ratings"], "--device", "gpu", "--out", tmp_path / "r", *FAST)
    if torch.cuda.is_available():
        assert result.exit_code == 0, result.output
    else:
        assert_one_line_failure(result, "CUDA is not available")
    assert_one_line_failure(invoke("--data", files["ratings"], "--device", "tpu", "--out", tmp_path / "r2",
                                   *FAST), "unknown device", "gpu")


# -- resume (issue 8, issue 11 item 3) -------------------------------------------------------------
@pytest.fixture
def short_run(files, tmp_path):
    out = tmp_path / "run"
    assert invoke("--data", files["ratings"], "--model", "neumf", "--out", out, *FAST,
                  "--epochs", "1").exit_code == 0
    return out


@pytest.mark.parametrize("args, fragment", [
    (["--model", "mf"], "--model mf differs from the run's 'neumf'"),
    (["--batch-size", "10"], "--batch-size 10 differs from the run's '512'"),
    (["--data", "other.csv"], "--data other.csv differs from the run's"),
    (["--no-bias"], "--no-bias differs from the run's '--use-bias'"),
    (["--rating-range", "0", "10"], "--rating-range 0 10 differs"),
    (["--precision", "fp32"], "--precision fp32 differs"),
])
def test_resume_refuses_options_that_differ_from_the_run(short_run, args, fragment):
    before = (short_run / "last.pt").read_bytes()
    result = invoke("--out", short_run, "--resume", *args)
    assert_one_line_failure(result, fragment, "only --epochs, --patience, --device and --threads may change")
    assert (short_run / "last.pt").read_bytes() == before


def test_resume_accepts_the_run_s_own_values_and_the_four_that_may_change(files, short_run, tmp_path):
    toml = write(tmp_path, "resume.toml", 'model = "neumf"\nbatch_size = 512\n')
    result = invoke("--config", toml, "--out", short_run, "--resume", "--model", "neumf",
                    "--data", files["ratings"], "--embedding-dim", "4", "--epochs", "2",
                    "--patience", "3", "--threads", "1", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((short_run / "config.json").read_text())
    assert (config["train"]["epochs"], config["train"]["patience"]) == (2, 3)
    bad = write(tmp_path, "bad.toml", 'optimizer = "adam"\n')
    assert_one_line_failure(invoke("--config", bad, "--out", short_run, "--resume"),
                            "--optimizer adam differs from the run's 'rowwise-adagrad'")


def test_resume_with_last_pt_of_another_shape_is_one_line(files, short_run, tmp_path):
    other = tmp_path / "other"
    assert invoke("--data", files["ratings"], "--model", "neumf", "--out", other, *FAST, "--epochs", "1",
                  "--embedding-dim", "8").exit_code == 0
    (short_run / "last.pt").write_bytes((other / "last.pt").read_bytes())
    result = invoke("--out", short_run, "--resume", "--epochs", "2")
    assert_one_line_failure(result, "last.pt does not fit", "config.json", "another model shape")
    assert "Traceback" not in result.output


# -- TOML config (issue 11, item 7) ----------------------------------------------------------------
def test_toml_paths_resolve_from_the_file_and_it_holds_every_option(files, tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(files["ratings"].read_bytes())
    toml = write(folder, "train.toml", 'data = "ratings.csv"\nout = "runs/a"\nmodel = "mf"\nquiet = true\n'
                 'overwrite = true\nepochs = 1\nbatch-size = 512\nthreads = 1\nembedding_dim = 4\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for _ in range(2):  # the second run needs overwrite = true from the file
        result = invoke("--config", toml)
        assert result.exit_code == 0, result.output
    assert (folder / "runs" / "a" / "COMPLETE").is_file() and not (elsewhere / "runs").exists()
    assert "Users:" not in result.output  # quiet = true: no statistics block
    config = json.loads((folder / "runs" / "a" / "config.json").read_text())
    assert config["data"]["sources"] == [str(folder / "ratings.csv")]
    resume = write(folder, "resume.toml", 'out = "runs/a"\nresume = true\nepochs = 2\nquiet = true\n')
    result = invoke("--config", resume)
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output


# -- constant ratings (issue 11, item 6) -----------------------------------------------------------
@pytest.mark.parametrize("model", ["mf", "neumf"])
def test_constant_ratings_give_a_model_as_good_as_the_constant(tmp_path, model):
    rng = np.random.default_rng(0)
    pairs = rng.choice(300 * 200, 5000, replace=False)
    rows = "\n".join(f"{p // 200},{p % 200},3" for p in pairs)
    data = write(tmp_path, "eq.csv", "user_id,item_id,rating\n" + rows + "\n")
    out = tmp_path / "run"
    result = invoke("--data", data, "--model", model, "--epochs", "2", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["rmse"] < 0.05, metrics["test"]
    assert all(h["valid_rmse"] < 0.05 for h in metrics["history"]), metrics["history"]


def test_every_option_is_documented():
    from pathlib import Path

    from recmodels.cli.train import OPTIONS

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for opt in OPTIONS:
        for flag in opt.flags[0].split("/"):
            assert f"`{flag}" in text or f"/{flag}" in text, f"{flag} is not in docs/training.md"


# -- issue 21: u.data (#10), "not rated" values (#13), the rating step (#9) ------------------------
U_COLUMNS = "user_id,item_id,rating,timestamp"


def _u_data(path, synthetic):
    frame = synthetic.ratings[["user_id", "item_id", "rating"]].assign(timestamp=881250949)
    frame.to_csv(path, sep="\t", header=False, index=False)
    return path


def test_train_reads_movielens_u_data_and_records_the_dialect(synthetic, tmp_path):
    path = _u_data(tmp_path / "u.data", synthetic)
    out = tmp_path / "run"
    result = invoke("--data", path, "--sep", "tab", "--no-header", "--columns", U_COLUMNS,
                    "--model", "mf", "--out", out, "--no-refit", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["csv"] == {"sep": "\t", "header": False, "columns": U_COLUMNS.split(",")}
    assert data["rating_step"] == 1.0
    # a resume may repeat the options (spelled either way), not change them
    assert invoke("--out", out, "--resume", "--sep", "\\t", "--no-header", *FAST).exit_code == 0
    assert_one_line_failure(invoke("--out", out, "--resume", "--sep", ","), "--sep , differs")
    # the same options from a TOML file
    toml = tmp_path / "u.toml"
    toml.write_text(f'data = "{path}"\nsep = "tab"\nheader = false\ncolumns = {U_COLUMNS.split(",")!r}\n'
                    .replace("'", '"'))
    result = invoke("--config", toml, "--model", "mf", "--out", tmp_path / "run2", "--no-refit", *FAST)
    assert result.exit_code == 0, result.output
    # without them: one line saying how to read it
    assert_one_line_failure(invoke("--data", path, "--out", tmp_path / "run3", *FAST),
                            "unsupported file type '.data'", "--sep tab")
    renamed = tmp_path / "u.tsv"
    renamed.write_text(path.read_text())
    assert_one_line_failure(invoke("--data", renamed, "--out", tmp_path / "run4", *FAST),
                            "header row looks like data", "--no-header --columns")
    assert not (tmp_path / "run3").exists() and not (tmp_path / "run4").exists()


def _shelved(path, synthetic):
    """The synthetic ratings plus as many Goodreads-like 0 rows ("shelved, not rated")."""
    rated = synthetic.ratings[["user_id", "item_id", "rating"]]
    shelved = rated.assign(item_id=rated["item_id"] + 10_000, rating=0)
    import pandas as pd

    pd.concat([rated, shelved]).to_csv(path, index=False)
    return path, len(shelved)


def test_missing_rating_drops_and_counts_the_not_rated_rows(synthetic, tmp_path):
    path, n_shelved = _shelved(tmp_path / "shelves.csv", synthetic)
    out = tmp_path / "warned"
    result = invoke("--data", path, "--model", "mf", "--out", out, "--no-refit",
                    *[a for a in FAST if a != "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning: rating 0 holds 50.0 % of the rows" in result.output
    assert "--missing-rating 0" in (out / "train.log").read_text()
    out = tmp_path / "dropped"
    result = invoke("--data", path, "--missing-rating", "0", "--model", "mf", "--out", out, "--no-refit",
                    *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["missing_rating"] == 0 and data["missing_rating_dropped"] == n_shelved
    assert data["rating_min"] >= 1
    stats = json.loads((out / "metrics.json").read_text())["data"]
    assert stats["missing_rating_dropped"] == n_shelved and stats["interactions"] == len(synthetic.ratings)
    log = (out / "train.log").read_text()
    assert f"Not rated:     {n_shelved:,} rows with rating 0 dropped" in log and "warning" not in log
    assert_one_line_failure(invoke("--out", out, "--resume", "--missing-rating", "1"), "differs")


def test_hit_accuracy_rounds_to_the_datas_rating_step(synthetic, tmp_path):
    # odd half stars only (0.5, 1.5, ... 4.5): whole-star rounding could never hit one
    frame = synthetic.ratings.assign(rating=np.clip(np.round(synthetic.ratings["rating"]), 1, 5) - 0.5)
    path = tmp_path / "halves.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "run"
    result = invoke("--data", path, "--model", "mf", "--out", out, "--no-refit", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "config.json").read_text())["data"]
    assert (data["rating_step"], data["rating_min"]) == (1.0, 0.5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["hit_accuracy"] > 0.2 and metrics["valid"]["hit_accuracy"] > 0.2


def test_no_refit_tables_is_recorded(files, tmp_path):
    out = tmp_path / "run"
    result = invoke("--data", files["ratings"], "--model", "mf", "--out", out, "--no-refit-tables", *FAST)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["refit_tables"] is False and config["train"]["refit"] is True
