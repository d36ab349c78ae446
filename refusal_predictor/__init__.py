"""refusal-predictor: is an LLM response a refusal, and will a prompt be refused?

>>> from refusal_predictor import ResponseClassifier
>>> ResponseClassifier.load().predict_proba(["I'm sorry, but I can't help with that."])
"""
# The public names and the submodules are imported on first use (PEP 562), not with the package:
# scikit-learn, LightGBM and ONNX Runtime take over a second to import, which every
# `refusal-predictor` command paid before it could read its options, and a Ctrl-C in that second
# was a traceback from inside SciPy instead of the command's "stopped by SIGINT".
import importlib as _importlib
import importlib.util as _importlib_util
import threading as _threading
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._forks import renew_in_child as _renew_in_child
from ._version import __version__

_PUBLIC = {
    "ModelFileError": ".artifacts",
    "bootstrap_file": ".bootstrap",
    "ResponseCascade": ".cascade",
    "ResponseClassifier": ".classifiers",
    "PromptClassifier": ".prompt",
}
# scikit-learn's circular imports fail ("partially initialized module", _DeadlockError) when two
# threads import it at once, as a threaded server's first requests would: one import at a time.
_IMPORT_LOCK = _threading.RLock()
# A forked child gets its own lock. A fork in the middle of another thread's first use still leaves
# the child Python's per-module import locks held by a thread it does not have; making the fork
# wait for that import instead deadlocked with logging's own fork lock. Use the names (or import
# them) before forking, as for any module a child will need.
_renew_in_child(globals(), "_IMPORT_LOCK", _threading.RLock)

__all__ = ["ResponseClassifier", "ResponseCascade", "PromptClassifier", "bootstrap_file", "ModelFileError", "__version__"]

if _TYPE_CHECKING:  # what type checkers and IDEs see
    from .artifacts import ModelFileError
    from .bootstrap import bootstrap_file
    from .cascade import ResponseCascade
    from .classifiers import ResponseClassifier
    from .prompt import PromptClassifier


def _import(module: str, name: str):
    with _IMPORT_LOCK:
        try:
            return _importlib.import_module(module, __name__)
        except AttributeError as exc:
            # Python reports an AttributeError from a module's __getattr__ as "cannot import name",
            # which would hide the cause (a numpy or scikit-learn version this code cannot use).
            raise ImportError(f"{__name__}.{name}: importing {__name__}{module} failed: "
                              f"{type(exc).__name__}: {exc}") from exc


def __getattr__(name: str):
    if name in _PUBLIC:
        value = globals()[name] = getattr(_import(_PUBLIC[name], name), name)  # later lookups skip this
        return value
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _import(f".{name}", name)  # `import refusal_predictor; refusal_predictor.thresholds...`
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
