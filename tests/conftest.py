"""Shared fixtures: the public data directory and the shipped models, loaded once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # scoring must never need the network

REPO = Path(__file__).resolve().parent.parent


def data_dir_or_skip() -> Path:
    path = Path(os.environ.get("REFUSAL_PREDICTOR_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"public data directory {path} not found (set REFUSAL_PREDICTOR_DATA)")
    return path


@pytest.fixture(autouse=True)
def _encoders_shared_within_a_test_only(monkeypatch):
    """Models share an open encoder (OnnxEncoder.shared); a test that counts or stands in for the
    encoders it opens must not be handed one that an earlier test's live model holds."""
    import weakref

    from refusal_predictor import encoder

    monkeypatch.setattr(encoder, "_SHARED", weakref.WeakValueDictionary())


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return data_dir_or_skip()


@pytest.fixture(scope="session")
def response_model():
    from refusal_predictor import ResponseClassifier

    return ResponseClassifier.load()


@pytest.fixture(scope="session")
def prompt_model():
    from refusal_predictor import PromptClassifier

    return PromptClassifier.load()
