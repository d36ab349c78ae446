"""refusal-predictor: is an LLM response a refusal, and will a prompt be refused?

>>> from refusal_predictor import ResponseClassifier
>>> ResponseClassifier.load().predict_proba(["I'm sorry, but I can't help with that."])

The public names are imported on first use (PEP 562), not with the package: scikit-learn,
LightGBM and ONNX Runtime took 1.2 s to import, which every ``refusal-predictor`` command paid
before it could read its options (``--help`` included), and a Ctrl-C in that second ended in a
traceback from deep inside SciPy instead of the command's own "stopped by SIGINT".
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_PUBLIC = {
    "ModelFileError": ".artifacts",
    "bootstrap_file": ".bootstrap",
    "ResponseCascade": ".cascade",
    "ResponseClassifier": ".classifiers",
    "PromptClassifier": ".prompt",
}

__all__ = ["ResponseClassifier", "ResponseCascade", "PromptClassifier", "bootstrap_file", "ModelFileError", "__version__"]

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .artifacts import ModelFileError
    from .bootstrap import bootstrap_file
    from .cascade import ResponseCascade
    from .classifiers import ResponseClassifier
    from .prompt import PromptClassifier


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
