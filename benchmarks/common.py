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


def provider_list(text: str) -> list[str]:
    """``--providers``: comma-separated onnxruntime provider names, checked as the option is read,
    before any data or model loads (an empty value was the default without a word)."""
    from refusal_predictor.encoder import check_session_options

    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError("expected comma-separated onnxruntime provider names, e.g. "
                                         "CUDAExecutionProvider,CPUExecutionProvider")
    try:
        check_session_options(providers=names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def configure_encoders(parser: argparse.ArgumentParser, models: Iterable[Any], providers: list[str] | None,
                       threads: int | None) -> None:
    """Open every model's encoder with ``--providers`` (:func:`provider_list`) and ``--threads`` as
    ``configure_encoder`` does; what onnxruntime still refuses is an option error, not a traceback."""
    try:
        for model in models:
            model.configure_encoder(providers=providers, num_threads=threads)
    except ValueError as exc:
        parser.error(str(exc))


def figure(value: float) -> str:
    """Three significant digits with thousands separators, as the README quotes them (2,090, not 2.09e+03)."""
    return f"{float(f'{value:.3g}'):,g}"
