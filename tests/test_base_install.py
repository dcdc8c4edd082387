"""Without the `train` extra, training commands fail with one line that says what to install."""

import subprocess
import sys
import textwrap


def test_train_and_export_without_torch_say_what_to_install(tmp_path):
    (tmp_path / "r.csv").write_text("user_id,item_id,rating\n1,2,3\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # as if the base install (no torch) were all there is
        sys.modules["onnx"] = None
        from recmodels.cli import main
        for args in (["train", "--data", r"{tmp_path / 'r.csv'}", "--out", r"{tmp_path / 'run'}"],
                     ["export", r"{tmp_path}", "--out", r"{tmp_path / 'b'}"]):
            try:
                main(args)
            except SystemExit as exc:
                print("exit", exc.code)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.split() == ["exit", "1", "exit", "1"], proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and all("pip install 'recmodels[train]'" in e for e in errors), proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "b").exists()
