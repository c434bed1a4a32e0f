"""Text clean-up for utterances: undo mojibake, ASCII punctuation, single spaces.

MELD's CSVs are UTF-8 with typographic punctuation (’ … — ‘ “ ”). Older copies carried raw cp1252
bytes (0x92 for ’, 0x85 for …; see declare-lab/MELD pull request 28), and reading the UTF-8 files
as latin-1/cp1252 (pandas `encoding='latin1'`, Python 2 pickles loaded with `encoding='latin1'`)
produces `â€™` / `â\\x80\\x99` / `Â\\x92`. `normalize_text` repairs all of these, then maps the
punctuation to ASCII so that every source of the same sentence embeds identically.
"""

from __future__ import annotations

import re
import unicodedata

MAX_REPAIR_PASSES = 3  # text mis-decoded twice (Ã¢â‚¬â„¢) needs two passes; three is plenty


def _byte_of_char() -> dict[str, int]:
    """Char -> byte for bytes 0x80-0xFF under cp1252 and latin-1 (the two usual mis-decodings)."""
    table: dict[str, int] = {}
    for b in range(0x80, 0x100):
        table[chr(b)] = b  # latin-1: the byte itself (C1 controls for 0x80-0x9F)
        try:
            table[bytes([b]).decode("cp1252")] = b
        except UnicodeDecodeError:  # 0x81 0x8D 0x8F 0x90 0x9D are undefined in cp1252
            continue
    return table


BYTE_OF_CHAR: dict[str, int] = _byte_of_char()


def _char_class(lo: int, hi: int) -> str:
    return "[" + "".join(re.escape(c) for c, b in BYTE_OF_CHAR.items() if lo <= b <= hi) + "]"


_CONT = _char_class(0x80, 0xBF)  # UTF-8 continuation bytes as mis-decoded chars
# One UTF-8 sequence (lead byte + its continuation bytes) seen through cp1252/latin-1 eyes.
MOJIBAKE_RE = re.compile(
    f"{_char_class(0xC2, 0xDF)}{_CONT}|{_char_class(0xE0, 0xEF)}{_CONT}{{2}}|{_char_class(0xF0, 0xF4)}{_CONT}{{3}}"
)

# C1 control chars (U+0080-U+009F) are cp1252 bytes read as latin-1: \x92 -> ’, \x85 -> … ;
# the five bytes cp1252 leaves undefined are dropped.
C1_TO_CP1252: dict[int, str] = {
    b: bytes([b]).decode("cp1252", errors="ignore") for b in range(0x80, 0xA0)
}

# Typographic punctuation -> ASCII; invisible characters -> removed.
ASCII_PUNCT: dict[int, str] = str.maketrans({
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u02bc\u00b4", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2212", "-"),
    "\u2026": "...",
    **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", ""),
})
EM_DASH_RE = re.compile("[\u2014\u2015]+")  # em dash / horizontal bar runs: "uh—Wait" -> "uh - Wait"


def _repair_sequence(m: re.Match[str]) -> str:
    raw = bytes(BYTE_OF_CHAR[c] for c in m.group(0))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # not a real UTF-8 sequence (e.g. overlong): leave the text alone
        return m.group(0)


def repair_mojibake(s: str) -> str:
    """Undo UTF-8 text that was decoded as cp1252/latin-1, and raw cp1252 bytes read as latin-1."""
    for _ in range(MAX_REPAIR_PASSES):
        fixed = MOJIBAKE_RE.sub(_repair_sequence, s)
        if fixed == s:
            break
        s = fixed
    return s.translate(C1_TO_CP1252)


def normalize_text(s: str) -> str:
    """Repair mojibake, NFC, typographic quotes/dashes/ellipsis -> ASCII, collapse whitespace, strip."""
    s = unicodedata.normalize("NFC", repair_mojibake(s))
    s = EM_DASH_RE.sub(" - ", s.translate(ASCII_PUNCT))
    return " ".join(s.split())
