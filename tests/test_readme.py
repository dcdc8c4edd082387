"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "score" in out and "known" in out
    assert (tmp_path / "bundles" / "neumf" / "manifest.json").is_file()
    # the example evaluates on users and items the model has seen (a proper split), so almost
    # no test row gets the fallback
    model, test = namespace["model"], namespace["test"]
    model.predict(test)
    assert model.n_fallback_ <= 0.01 * len(test), f"{model.n_fallback_} of {len(test)} rows unseen"
