"""Grapheme clusters: what a reader sees as one character, and the columns it takes.

A person sees 👨‍👩‍👧 (three emoji joined by ZERO WIDTH JOINER), 🇫🇷 (two regional
indicators), é written as e + U+0301 and 각 written as three Hangul jamo each as
*one* character. Counting code points instead splits them: wrapping puts half a
flag on the next row, truncating cuts a family into a man and a stray joiner.
This module finds the clusters with the rules of UAX #29 (extended grapheme
clusters) that matter for chat text, using only the standard library, and gives
each cluster a width.

Rules implemented (numbers as in UAX #29): GB3-5 (CR LF, controls break), GB6-8
(Hangul L/V/T/LV/LVT syllables), GB9 (Extend and ZWJ attach to what precedes),
GB9a (spacing marks attach), GB11 (emoji ZWJ sequences of Extended_Pictographic),
GB12/13 (regional indicators pair into flags), GB999. Left out on purpose:
GB9b (Prepend; its format characters are stripped by ``text.sanitize`` anyway)
and GB9c (Unicode 15.1 Indic conjuncts: terminals draw क्ष in two columns, so
keeping क् and ष as two clusters keeps the width right).

Width of a cluster: what the screen gives it. Curses advances the cursor by
each code point's width (East Asian Width W and F take two columns, marks,
joiners and selectors none, a spacing mark one), so a cluster takes at least
the sum of those; a pictograph with VS16 (❤️) or a keycap takes two however
narrow its base; a flag (two regional indicators) takes two. A ZWJ family thus
takes six columns as drawn by curses, two where ``JOINED_EMOJI_ARE_ONE_GLYPH``
says the screen joins it. Where terminals disagree this errs towards counting
more, which leaves a blank cell; counting less would let a row overflow its
pane.
"""
from __future__ import annotations

import unicodedata
from bisect import bisect_right
from itertools import accumulate
from typing import Dict, Iterator, List, Optional, Tuple

ZWJ = "\u200d"
ZWNJ = "\u200c"
VS16 = "\ufe0f"

# Grapheme_Cluster_Break classes (plus PICT for Extended_Pictographic, which is
# Other in UAX #29 but takes part in rule GB11).
OTHER, CR, LF, CONTROL, EXTEND, ZWJ_, RI, SPACING, L, V, T, LV, LVT, PICT = range(14)

#: Extended_Pictographic (emoji-data.txt, Unicode 13-15), reserved code points of
#: the emoji blocks included as the data file does, so that emoji added later join
#: sequences too.
_PICTOGRAPHIC: Tuple[Tuple[int, int], ...] = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049),
    (0x2122, 0x2122), (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA),
    (0x231A, 0x231B), (0x2328, 0x2328), (0x2388, 0x2388), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB),
    (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2605),
    (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721),
    (0x2728, 0x2728), (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747),
    (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757),
    (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0),
    (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F),
    (0x1F12F, 0x1F12F), (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5), (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A),
    (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA),
    (0x1F400, 0x1F53D), (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F),
    (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945),
    (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD),
)
_PICTOGRAPHIC_STARTS = tuple(start for start, _ in _PICTOGRAPHIC)
_REGIONAL_INDICATORS = "".join(map(chr, range(0x1F1E6, 0x1F200)))

#: How far back ``spans_before`` looks for a certain boundary. Only a run this long
#: of marks (or regional indicators) has none; a run of marks is cut here, so that
#: the cost of drawing an input line stays bounded whatever a paste holds.
MAX_LOOKBACK = 512


#: Whether the screen shows an emoji ZWJ sequence (👨‍👩‍👧) or a skin-tone sequence
#: (👍🏽) as one wide glyph, as terminals that segment graphemes do. Off, because
#: the client draws through curses, which advances the cursor by each code point's
#: own width (and ncurses 6.4 drops a joiner that follows a wide character): the
#: family takes six columns on the screen, and counting two let a row of them
#: spill out of the messages pane over the next row (seen in a pty). Such a
#: sequence is still one cluster either way, never split by wrapping or cutting.
JOINED_EMOJI_ARE_ONE_GLYPH = False


def is_pictographic(cp: int) -> bool:
    """Extended_Pictographic: emoji and the symbols that emoji sequences are built from."""
    i = bisect_right(_PICTOGRAPHIC_STARTS, cp) - 1
    return i >= 0 and cp <= _PICTOGRAPHIC[i][1]


def _classify(ch: str) -> int:
    """The Grapheme_Cluster_Break class of one character (PICT for pictographs)."""
    cp = ord(ch)
    if 0x20 <= cp < 0x7F:
        return OTHER
    if cp == 0x0D:
        return CR
    if cp == 0x0A:
        return LF
    if cp == 0x200D:
        return ZWJ_
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return RI
    if 0x1100 <= cp <= 0x11FF or 0xA960 <= cp <= 0xA97F or 0xD7B0 <= cp <= 0xD7FF:
        if cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
            return L
        if cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
            return V
        if cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
            return T
        return OTHER
    if 0xAC00 <= cp <= 0xD7A3:
        return LV if (cp - 0xAC00) % 28 == 0 else LVT
    # Extend beyond the marks: ZWNJ, emoji skin tones, emoji tags, and the
    # halfwidth katakana voicing marks (Grapheme_Extend = Yes).
    if (cp == 0x200C or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F
            or cp in (0xFF9E, 0xFF9F)):
        return EXTEND
    category = unicodedata.category(ch)
    if category in ("Mn", "Me") or unicodedata.combining(ch):
        return EXTEND
    if category == "Mc" or cp in (0x0E33, 0x0EB3):     # Thai and Lao AM are letters that space
        return SPACING
    if category in ("Cc", "Cf", "Zl", "Zp", "Cs"):
        return CONTROL
    if is_pictographic(cp):
        return PICT
    return OTHER


#: What is known of the characters seen so far: their class, their width, and
#: which of them always stand alone as a cluster (Other and pictographs: no rule
#: joins two of them). Text made only of those, the usual case, is measured
#: without segmenting it. Bounded, so that a flood of distinct characters cannot
#: grow them without end.
_CLASSES: Dict[str, int] = {chr(cp): OTHER for cp in range(0x20, 0x7F)}
_WIDTHS: Dict[str, int] = {chr(cp): 1 for cp in range(0x20, 0x7F)}
_ALONE = set(_CLASSES)
_CACHE_LIMIT = 8192


def _klass(ch: str) -> int:
    k = _CLASSES.get(ch)
    if k is None:
        k = _classify(ch)
        if len(_CLASSES) < _CACHE_LIMIT:
            _CLASSES[ch] = k
            if k == OTHER or k == PICT:
                _WIDTHS[ch] = _measure(ch)
                _ALONE.add(ch)
    return k


def _pair_rule(prev: int, cur: int) -> int:
    """Between classes ``prev`` and ``cur``: 0 a break, 1 none, 2 GB11 decides, 3 GB12/13 do."""
    if prev == CR:
        return 1 if cur == LF else 0                             # GB3, GB4
    if prev in (LF, CONTROL) or cur in (CR, LF, CONTROL):
        return 0                                                 # GB4, GB5
    if cur in (EXTEND, ZWJ_, SPACING):
        return 1                                                 # GB9, GB9a
    if prev == L:
        return 1 if cur in (L, V, LV, LVT) else 0                # GB6
    if prev in (LV, V):
        return 1 if cur in (V, T) else 0                         # GB7
    if prev in (LVT, T):
        return 1 if cur == T else 0                              # GB8
    if prev == ZWJ_ and cur == PICT:
        return 2                                                 # GB11
    if prev == RI and cur == RI:
        return 3                                                 # GB12, GB13
    return 0                                                     # GB999


_CLASS_COUNT = 14
_RULES = bytes(_pair_rule(p, c) for p in range(_CLASS_COUNT) for c in range(_CLASS_COUNT))


def _joined_pictograph(text: str, begin: int, zwj: int) -> bool:
    """GB11: is the ZWJ at ``zwj`` preceded by a pictograph and Extend* in its cluster?"""
    j = zwj - 1
    while j >= begin and _klass(text[j]) == EXTEND:
        j -= 1
    return j >= begin and _klass(text[j]) == PICT


def spans(text: str, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, int]]:
    """(start, end) of each cluster of ``text[start:end]``, lazily, first to last.

    ``start`` is taken to be a cluster boundary and ``end`` ends the last
    cluster, as if the text stopped there. Lazy so that a caller filling a row
    of the screen pays for that row only. The rules that look further back than
    one character (GB11, GB12/13) look only inside the cluster being built: a
    ZWJ and the Extend before it never begin a cluster, and a regional
    indicator pairs when it is the second of its cluster.
    """
    if end is None:
        end = len(text)
    if start >= end:
        return
    classes, rules = _CLASSES, _RULES
    begin = start
    prev = _klass(text[start])
    for i in range(start + 1, end):
        cur = classes.get(text[i])
        if cur is None:
            cur = _klass(text[i])
        rule = rules[prev * _CLASS_COUNT + cur]
        if rule != 1 and (rule == 0 or (rule == 3 and i - 1 != begin)
                          or (rule == 2 and not _joined_pictograph(text, begin, i - 1))):
            yield begin, i
            begin = i
        prev = cur
    yield begin, end


def _anchor(text: str, i: int) -> int:
    """The nearest index at or before ``i`` before which a cluster surely begins.

    A letter, an ideograph, a space or a control begins a cluster whatever came
    before it (Prepend is not implemented); a pictograph does unless a ZWJ joins
    it; a Hangul syllable or leading jamo does unless a leading jamo precedes.
    """
    limit = max(0, i - MAX_LOOKBACK)
    klass = _klass
    while i > limit:
        k = klass(text[i])
        if k == OTHER or k == CONTROL or k == CR:
            return i
        if k == LF and klass(text[i - 1]) != CR:
            return i
        if k == PICT and klass(text[i - 1]) != ZWJ_:
            return i
        if (k == L or k == LV or k == LVT) and klass(text[i - 1]) != L:
            return i
        i -= 1
    if limit and klass(text[limit]) == RI:
        # Deep in a run of regional indicators: flags pair from the run's start,
        # so count back to it (a cheap scan) and begin on a whole flag.
        first = limit
        while first > 0:
            chunk = text[max(0, first - 4096):first]
            rest = chunk.rstrip(_REGIONAL_INDICATORS)
            first -= len(chunk) - len(rest)
            if rest:
                break
        limit -= (limit - first) % 2
    return limit


def spans_before(text: str, end: int) -> Iterator[Tuple[int, int]]:
    """(start, end) of each cluster of ``text[:end]``, lazily, last to first.

    Segments back from ``end`` a stretch at a time, each from a certain boundary,
    so walking k clusters back from a cursor costs about k clusters, not the
    length of the line.
    """
    while end > 0:
        start = _anchor(text, end - 1)
        yield from reversed(list(spans(text, start, end)))
        end = start


def clusters(text: str) -> Iterator[str]:
    """The grapheme clusters of ``text``, in order; joined, they are ``text``."""
    if text.isascii() and "\r" not in text or _alone(text):
        yield from text
        return
    for start, end in spans(text):
        yield text[start:end]


def _char_width(ch: str) -> int:
    """Columns of one code point on its own, as terminals (wcwidth) count it."""
    w = _WIDTHS.get(ch)
    if w is None:
        w = _measure(ch)
        if len(_WIDTHS) < _CACHE_LIMIT:
            _WIDTHS[ch] = w
    return w


def _measure(ch: str) -> int:
    cp = ord(ch)
    k = _klass(ch)
    if k == RI or 0x1F3FB <= cp <= 0x1F3FF:
        return 2                      # a flag's half, a skin tone: emoji fonts draw them wide
    if k == EXTEND and cp not in (0xFF9E, 0xFF9F) or k == ZWJ_ or k == V or k == T:
        return 0                      # marks, joiners, selectors, jamo vowels and finals
    if k == CONTROL:
        return 1 if unicodedata.category(ch) == "Cc" else 0
    if unicodedata.category(ch) == "Cn":
        # Not yet in this Python's tables (unicodedata reports them as wide): an
        # emoji of a newer Unicode is wide, as is anything on the ideograph planes.
        return 2 if k == PICT or 0x20000 <= cp <= 0x3FFFD else 1
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 1


def cluster_width(cluster: str) -> int:
    """Columns one grapheme cluster takes on the screen (see the module's docstring)."""
    if len(cluster) <= 1:
        return _char_width(cluster) if cluster else 0
    first = cluster[0]
    k = _klass(first)
    if k == RI:
        return 2                                   # a flag
    drawn = sum(map(_char_width, cluster))         # what curses advances, code point by code point
    if k == PICT:
        if JOINED_EMOJI_ARE_ONE_GLYPH and any(_klass(ch) == PICT or 0x1F3FB <= ord(ch) <= 0x1F3FF
                                               for ch in cluster[1:]):
            return 2                               # a ZWJ sequence or a skin tone, as one glyph
        if VS16 in cluster:
            return max(2, drawn)                   # emoji presentation: ❤️ is wide
    elif VS16 in cluster and first in "#*0123456789":
        return max(2, drawn)                       # a keycap: 1️⃣
    return drawn


def _alone(text: str) -> bool:
    """True when every character of ``text`` is a cluster by itself (and its width known)."""
    return _ALONE.issuperset(text)


def text_width(text: str) -> int:
    """Columns ``text`` takes: the sum of its clusters' widths."""
    if text.isascii():
        return len(text)
    if _alone(text):
        return sum(map(_WIDTHS.__getitem__, text))
    return sum(_char_width(text[a]) if b - a == 1 else cluster_width(text[a:b])
               for a, b in spans(text))


def fit(text: str, width: int) -> int:
    """Length of the longest prefix of ``text`` that is whole clusters within ``width``."""
    if width <= 0:
        return 0
    if text.isascii() and "\r" not in text:
        return min(len(text), width)
    if _alone(text):
        return bisect_right(list(accumulate(map(_WIDTHS.__getitem__, text))), width)
    used = 0
    for start, end in spans(text):
        used += _char_width(text[start]) if end - start == 1 else cluster_width(text[start:end])
        if used > width:
            return start
    return len(text)


def next_boundary(text: str, i: int) -> int:
    """Where the cluster that starts at ``i`` ends: a cursor moving right by one."""
    for _, end in spans(text, i):
        return end
    return len(text)


def previous_boundary(text: str, i: int) -> int:
    """Where the cluster that ends at ``i`` starts: a cursor moving left, or Backspace."""
    for start, _ in spans_before(text, i):
        return start
    return 0


def split(text: str) -> List[Tuple[str, int]]:
    """Each cluster with its width, for code that lays clusters out (wrapping)."""
    if text.isascii() and "\r" not in text:
        return [(ch, 1) for ch in text]
    if _alone(text):
        return list(zip(text, map(_WIDTHS.__getitem__, text)))
    out = []
    for a, b in spans(text):
        if b - a == 1:
            ch = text[a]
            out.append((ch, _char_width(ch)))
        else:
            cluster = text[a:b]
            out.append((cluster, cluster_width(cluster)))
    return out
