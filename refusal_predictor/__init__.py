"""refusal-predictor: is an LLM response a refusal, and will a prompt be refused?

>>> from refusal_predictor import ResponseClassifier
>>> ResponseClassifier.load().predict_proba(["I'm sorry, but I can't help with that."])
"""
from ._version import __version__
from .artifacts import ModelFileError
from .classifiers import ResponseClassifier

__all__ = ["ResponseClassifier", "ModelFileError", "__version__"]

try:  # the prompt classifier lives in its own module
    from .prompt import PromptClassifier  # noqa: F401

    __all__.append("PromptClassifier")
except ImportError:  # pragma: no cover
    pass
