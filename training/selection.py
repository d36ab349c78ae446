"""Model selection for the training pipelines; the implementation lives in the package."""
from refusal_predictor.selection import fit_with_cache, grouped_cv, select

__all__ = ["fit_with_cache", "grouped_cv", "select"]
