"""The package's front door: ``import recmodels`` offers the main names lazily and stays light; no
package exports a function or class under the name of one of its own modules."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import recmodels

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "recmodels"
HEAVY = ("torch", "pandas", "pyarrow", "onnxruntime")

FRONT_DOOR = {
    "Bundle": "recmodels.bundle.load",
    "Scorer": "recmodels.scoring.pairs.scorer",
    "score": "recmodels.scoring.pairs.scorer",
    "Recommender": "recmodels.scoring.recommendation.recommender",
    "recommend": "recmodels.scoring.recommendation.recommender",
    "evaluate": "recmodels.scoring.evaluation.evaluator",
    "RatingModel": "recmodels.training.estimator",
    "train_run": "recmodels.training.pipeline",
    "export_onnx": "recmodels.export.api",
}


def _loaded_after(code: str) -> dict:
    """Which of ``HEAVY`` (and the recmodels modules) a fresh interpreter has loaded after ``code``."""
    script = (f"import json, sys\n{code}\n"
              "print(json.dumps({'heavy': [m for m in %r if m in sys.modules],"
              " 'recmodels': sorted(m for m in sys.modules if m.startswith('recmodels'))}))" % (HEAVY,))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(FRONT_DOOR))
def test_the_front_door_names_are_the_library_objects(name):
    if name in ("RatingModel", "train_run", "export_onnx"):
        pytest.importorskip("torch")
    value = getattr(recmodels, name)
    assert value is getattr(importlib.import_module(FRONT_DOOR[name]), name)
    assert value.__module__ == FRONT_DOOR[name]


def test_dir_and_all_list_the_front_door():
    assert sorted(recmodels.__all__) == sorted(FRONT_DOOR)
    assert set(FRONT_DOOR) <= set(dir(recmodels))
    assert "__version__" in dir(recmodels)
    with pytest.raises(AttributeError, match="no attribute 'Scorerr'"):
        recmodels.Scorerr  # noqa: B018


def test_from_recmodels_import_star_gives_the_front_door():
    namespace: dict = {}
    exec("from recmodels import *", namespace)
    assert set(FRONT_DOOR) <= set(namespace)


def test_import_recmodels_is_light():
    loaded = _loaded_after("import recmodels")
    assert loaded["heavy"] == [], loaded
    assert loaded["recmodels"] == ["recmodels", "recmodels._lazy"], loaded  # _lazy: its __getattr__


def test_the_scoring_names_do_not_import_torch():
    loaded = _loaded_after("import recmodels\nrecmodels.Scorer, recmodels.recommend, recmodels.evaluate, "
                           "recmodels.Bundle")
    assert "torch" not in loaded["heavy"], loaded
    assert not any(m.startswith(("recmodels.training", "recmodels.export")) for m in loaded["recmodels"])


def test_the_scoring_package_is_lazy_too():
    """``recmodels.scoring.defaults`` (what the CLI's --help reads) runs ``scoring/__init__`` first."""
    loaded = _loaded_after("import recmodels.scoring.defaults")
    assert loaded["heavy"] == [], loaded
    scoring = importlib.import_module("recmodels.scoring")
    for name in scoring.__all__:
        value = getattr(scoring, name)
        assert not inspect.ismodule(value), name


# -- modules and functions do not share a name -----------------------------------------------------
def _packages(root: Path):
    for init in sorted(root.rglob("__init__.py")):
        parts = init.parent.relative_to(root.parent).parts
        yield ".".join(parts), init.parent


def _submodules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}


def name_clashes(root: Path = PACKAGE) -> list[str]:
    """``package.name`` for every function or class a package exports (``__all__``, else its public
    names) under the name of one of its own submodules: ``import package.name as m`` would give the
    function, and importing the submodule would replace the function on the package."""
    clashes = []
    for name, folder in _packages(root):
        try:
            package = importlib.import_module(name)
        except ImportError as exc:  # an optional extra (pyspark, dask, optuna) that is not installed
            if (exc.name or "").split(".")[0] == "recmodels":
                raise
            continue
        exported = getattr(package, "__all__", None) or [n for n in vars(package) if not n.startswith("_")]
        for attr in sorted(set(exported) & _submodules(folder)):
            value = getattr(package, attr, None)
            if inspect.isfunction(value) or inspect.isclass(value) or not inspect.ismodule(value):
                clashes.append(f"{name}.{attr}")
    return clashes


def test_no_package_exports_a_function_or_class_named_like_its_module():
    assert name_clashes() == [], "rename the function or stop exporting it from the package"


def test_a_name_clash_is_found(tmp_path, monkeypatch):
    """The check can fail: a package exporting function ``tool`` beside its module ``tool.py``."""
    pkg = tmp_path / "clashpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .tool import tool\n__all__ = ['tool']\n")
    (pkg / "tool.py").write_text("def tool():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert name_clashes(pkg) == ["clashpkg.tool"]


# -- score / recommend take explicit keywords: exactly those of what they call -----------------------
def _keywords(func, drop=()) -> dict:
    """Name -> default of ``func``'s named parameters (``**kwargs`` and ``drop`` left out)."""
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.kind is not p.VAR_KEYWORD and name not in {"self", *drop}}


def _signature_cases():
    from recmodels.scoring.pairs import scorer
    from recmodels.scoring.recommendation import recommender

    scorer_options = _keywords(scorer.Scorer.__init__, ("bundle",))
    recommender_options = _keywords(recommender.Recommender.__init__, ("bundle",))
    job_inputs = _keywords(recommender.Recommender.prepare)
    return {
        "score": (scorer.score, {"bundle": inspect.Parameter.empty, "input": inspect.Parameter.empty,
                                 "output": inspect.Parameter.empty, **scorer_options,
                                 **_keywords(scorer.Scorer.score_file, ("input", "output"))}),
        "score_frame": (scorer.score_frame, {"bundle": inspect.Parameter.empty,
                                             "frame": inspect.Parameter.empty, **scorer_options,
                                             **_keywords(scorer.Scorer.score_frame, ("frame",))}),
        "recommend": (recommender.recommend, {
            "bundle": inspect.Parameter.empty, "output": None, **recommender_options,
            **job_inputs, **_keywords(recommender.Recommender.recommend_file, ("output", "job"))}),
    }


@pytest.mark.parametrize("name", ["score", "score_frame", "recommend"])
def test_the_functions_take_every_option_of_what_they_call_by_name(name):
    """No ``**kwargs``: help() and IDEs list the options, and a new Scorer/Recommender/Scorer.score_file/
    Recommender.prepare option must be added here too (with the same default)."""
    func, expected = _signature_cases()[name]
    params = inspect.signature(func).parameters
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values())
    assert _keywords(func) == expected
    documented = func.__doc__
    for option in expected:
        assert option in documented, f"{name}: document {option!r} under Parameters"


@pytest.mark.parametrize("name, cls, positional", [
    ("score", "Scorer", ("b", "in", "out")), ("score_frame", "Scorer", ("b", "frame")),
    ("recommend", "Recommender", ("b", "out")), ("recommend", "Recommender", ("b",)),
])
def test_every_option_is_passed_on(monkeypatch, name, cls, positional):
    """Each keyword reaches the Scorer / Recommender or the method called on it: a value nobody else
    uses comes out the other end."""
    from recmodels.scoring.pairs import scorer
    from recmodels.scoring.recommendation import recommender

    module = scorer if cls == "Scorer" else recommender
    seen = {}

    class Recorder:
        def __init__(self, bundle, **options):
            seen.update(options)

        def close(self):
            pass

        def __getattr__(self, method):  # score_file, score_frame, recommend_file, recommend_frame
            return lambda *args, **options: seen.update(options)

    output_options = _keywords(recommender.Recommender.recommend_file)  # before Recommender is replaced
    monkeypatch.setattr(module, cls, Recorder)
    func = getattr(module, name)
    options = {option: object() for option in _keywords(func, ("bundle", "input", "output", "frame"))}
    if positional == ("b",):  # recommend() without output: the rows in memory, no output options
        options = {k: v for k, v in options.items() if k not in output_options}
    func(*positional, **options)
    assert seen == options  # object(): identity


def test_recommend_without_output_refuses_output_options():
    """``recommend(bundle)`` returns rows; an output option there would silently do nothing."""
    from recmodels.errors import ConfigError
    from recmodels.scoring import recommend

    with pytest.raises(ConfigError, match="part_users, resume need an output path"):
        recommend("no-such-bundle", part_users=5, resume=True)
