"""Names users choose among, on the command line and in the API.

Kept apart from the modules that use them (and free of imports) so that the command line can
offer them as choices without importing scikit-learn to read its options.
"""
from __future__ import annotations

HEADS = ("logreg", "lightgbm", "blend")
"""The classifier heads over the features: logistic regression, LightGBM, and the mean of their log-odds."""
