"""The package's names load on first use (PEP 562): from any thread, with any cause of failure shown."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *, site: Path | None = None, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """A fresh interpreter: the names must be cold (not yet imported) for these checks to mean anything."""
    import os

    env = {**os.environ, **(env_extra or {})}
    paths = [str(site)] if site else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_first_use_of_the_public_names_from_many_threads_at_once_imports_them_once():
    """A threaded server's first requests: scikit-learn's import cycles failed ("partially initialized
    module", _DeadlockError) in 4 of 6 runs when 15 threads touched the names together."""
    probe = """
        import threading, refusal_predictor
        names = ["ResponseClassifier", "PromptClassifier", "ResponseCascade", "bootstrap_file", "ModelFileError"] * 3
        barrier, errors = threading.Barrier(len(names)), []
        def use(name):
            barrier.wait()
            try:
                getattr(refusal_predictor, name)
            except BaseException as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        threads = [threading.Thread(target=use, args=(n,)) for n in names]
        [t.start() for t in threads]; [t.join(120) for t in threads]
        print("errors:", errors)
    """
    for _ in range(3):  # a race: one run may pass by luck, three rarely do
        run = _python(probe)
        assert run.returncode == 0, run.stderr
        assert "errors: []" in run.stdout, run.stdout


def test_submodules_are_attributes_of_the_package_as_the_readme_uses_them():
    run = _python("""
        import refusal_predictor
        print(refusal_predictor.thresholds.pick_threshold.__name__, refusal_predictor.cascade.DEFAULT_LOW)
        print(refusal_predictor.encoder.OnnxEncoder.__name__, refusal_predictor.batch.score_file.__name__)
        try:
            refusal_predictor.no_such_module
        except AttributeError as exc:
            print("missing:", exc)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["pick_threshold 0.02", "OnnxEncoder score_file",
                                       "missing: module 'refusal_predictor' has no attribute 'no_such_module'"]


def test_a_library_that_fails_to_import_is_named_not_hidden_behind_cannot_import_name(tmp_path):
    """An AttributeError while importing (a numpy that scikit-learn cannot use) became Python's bare
    "cannot import name 'ResponseClassifier'", with no cause, from a module __getattr__."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, importlib.util, sys
        class _Loader(importlib.abc.Loader):
            def create_module(self, spec): return None
            def exec_module(self, module):
                raise AttributeError("module 'numpy' has no attribute 'float'")
        class _Finder:
            def find_spec(self, name, path=None, target=None):
                return importlib.util.spec_from_loader(name, _Loader()) if name == "sklearn.calibration" else None
        sys.meta_path.insert(0, _Finder())
    """))
    run = _python("from refusal_predictor import ResponseClassifier", site=tmp_path)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: refusal_predictor.ResponseClassifier: importing refusal_predictor.classifiers failed")
    assert "module 'numpy' has no attribute 'float'" in last


def test_a_ctrl_c_while_the_model_libraries_load_is_the_commands_stopped_by_sigint(tmp_path):
    """The libraries load inside the command now, where an interrupt is handled; it was a traceback
    from inside SciPy. A finder raising KeyboardInterrupt on scikit-learn's import stands in for a
    Ctrl-C landing at that moment."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn":
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, _Interrupt())
    """))
    out = tmp_path / "out.jsonl"
    run = _python(f"""
        import sys
        from refusal_predictor.cli import main
        sys.exit(main(["label-responses", {str(ROOT / 'examples/chatgpt_responses.jsonl')!r}, "-o", {str(out)!r}]))
    """, site=tmp_path)
    assert run.returncode == 130, run.stderr
    assert "Traceback" not in run.stderr and "stopped by SIGINT" in run.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["sitecustomize.py"]


@pytest.mark.parametrize("argv, message", [
    (["label-responses", "IN.jsonl", "-o", "o.jsonl", "--tone-field", "t"], "--tone-field names the field of --tone"),
    (["evaluate", "IN.jsonl", "--target", "gpt-4"], "add --kind prompt"),
    (["train-response", "IN.jsonl", "-o", "m", "--encoder", "x", "--no-embeddings"], "exclude each other"),
    (["train-prompt", "IN.jsonl", "--target-name", "x", "--model-filter", "y", "--model-field", ""], "needs --model-field"),
    (["train-prompt", "IN.jsonl", "--target-name", "x", "-o", " "], "-o/--output is empty"),
])
def test_options_that_exclude_each_other_are_refused_before_the_model_libraries_load(argv, message):
    """They were refused, but only after 1.5-2.6 s of importing scikit-learn and ONNX Runtime."""
    run = _python(f"""
        import sys
        from refusal_predictor.cli import main
        status = main({argv!r})
        print("status", status, sorted(m for m in ("sklearn", "scipy", "lightgbm", "onnxruntime", "numpy") if m in sys.modules))
    """)
    assert run.stdout.strip() == "status 2 []", (run.stdout, run.stderr)
    assert message in run.stderr
