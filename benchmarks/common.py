"""What every benchmark script shares: saying how much was measured (option checks: refusal_predictor.cli.at_least_one).

A benchmark whose options were mistyped must stop with a one-line error, not print a plausible
table of something else (``--n -1`` once sliced to 1,705 texts) or end in a traceback after
minutes of loading (``--runs 0`` has no median).
"""
from __future__ import annotations

import argparse
import statistics
from typing import Any, Iterable, Sequence, TypeVar

T = TypeVar("T")


def first_n(items: Sequence[T], n: int, what: str) -> list[T]:
    """The first ``n`` items, saying so on stdout when the data holds fewer (the table then
    measures that many, and its title says how many)."""
    taken = list(items[:n])
    if len(taken) < n:
        print(f"note: --n {n} asked for more {what} than the data holds; measuring all {len(taken)}")
    return taken


def token_lengths(model: Any, texts: Sequence[str]) -> str:
    """Median and largest encoder token count (before truncation), and how many reach the window."""
    encoder = model.features_.get_encoder()
    lengths = sorted(encoder.token_lengths(texts))
    cut = sum(n >= encoder.max_seq_length for n in lengths)
    return (f"median {statistics.median(lengths):.0f} tokens, largest {lengths[-1]}, {cut} reach the encoder's "
            f"{encoder.max_seq_length}")


def configure_encoders(parser: argparse.ArgumentParser, models: Iterable[Any], providers: str | None,
                       threads: int | None) -> list[str] | None:
    """Open every model's encoder with ``--providers`` (comma-separated) and ``--threads`` as
    ``configure_encoder`` does; an unknown provider name is an option error, not a traceback.
    Returns the providers as a list (None: the default)."""
    names = providers.split(",") if providers else None
    try:
        for model in models:
            model.configure_encoder(providers=names, num_threads=threads)
    except ValueError as exc:
        parser.error(str(exc))
    return names
