"""refusal-predictor: is an LLM response a refusal, and will a prompt be refused?

>>> from refusal_predictor import ResponseClassifier
>>> ResponseClassifier.load().predict_proba(["I'm sorry, but I can't help with that."])
"""
from ._version import __version__
from .artifacts import ModelFileError
from .bootstrap import bootstrap_file
from .cascade import ResponseCascade
from .classifiers import ResponseClassifier
from .prompt import PromptClassifier

__all__ = ["ResponseClassifier", "ResponseCascade", "PromptClassifier", "bootstrap_file", "ModelFileError", "__version__"]
