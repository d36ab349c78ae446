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
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the MIT licence text must ship"
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
