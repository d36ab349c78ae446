"""Checks on a single text that the classifiers, the encoder and the log readers all need.

Kept apart from all three so that the encoder (loadable on its own) and the log readers do not
import each other or the classifiers for five lines of string handling.
"""
from __future__ import annotations

import unicodedata

_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors, vowel separator
    (0x200B, 0x200F),  # zero-width space, non-joiner, joiner; left-to-right and right-to-left marks
    (0x202A, 0x202E),  # bidirectional embeddings and overrides
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x206F),  # bidirectional isolates, deprecated format characters
    (0xFE00, 0xFE0F),  # variation selectors (an emoji's presentation)
    (0x3164, 0x3164),  # Hangul filler
    (0xFEFF, 0xFEFF),  # byte-order mark, zero-width no-break space
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),  # tags
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
"""Characters that show nothing (Unicode's default-ignorable format characters and selectors):
pasted text and chat front ends add them, and they neither make a text nor tell two apart."""
_INVISIBLE = {code: None for low, high in _INVISIBLE_RANGES for code in range(low, high + 1)}


def is_blank(text: str) -> bool:
    """Nothing but whitespace and invisible characters (zero-width spaces, BOM, soft hyphen,
    direction marks, variation selectors: ``_INVISIBLE_RANGES``)."""
    return not text.translate(_INVISIBLE).strip()


def lone_surrogate_at(text: str) -> int | None:
    """Index of the first lone UTF-16 surrogate (half a character) in ``text``, else ``None``.

    Python strings may hold one (``json`` decodes ``"\\ud83d"`` alone; ``surrogateescape`` decodes
    bytes invalid in an encoding to one), and such a text can be neither tokenised nor written as
    UTF-8, with errors that name neither the text nor the cause.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def text_key(text: str) -> str:
    """What makes two texts one: equal up to Unicode compatibility forms, whitespace, case and
    invisible characters (zero-width spaces and joiners, BOM, soft hyphen, direction marks,
    variation selectors: those ``is_blank`` reads as nothing).

    Logs repeat a prompt (or a canned refusal) with a trailing newline, doubled spaces or other
    capitals, and the features barely tell such copies apart. Kept as two texts, one copy could
    land in a held-out split while its twin trained: a log holding each prompt twice reported a
    held-out AUROC of 0.96 where the true one was 0.81; copies differing by a zero-width space
    alone (as pasted text carries) did the same, 0.98 for 0.83.
    """
    # NFKC again after casefold: casefold can undo a composition ("\u00df\u0301" to "ss\u0301"),
    # and a key must be its own key.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text.translate(_INVISIBLE)).casefold())
    return " ".join(folded.translate(_INVISIBLE).split())
