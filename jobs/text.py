"""Text shown to people, whatever layer shows it: nothing of jobs is imported here.

Bidirectional control characters (Unicode "Trojan Source") are escaped by the
HTML escaper yet still reorder the text around them, so a job name could show
one thing and be another. Every HTML page (middleware.BidiControlMiddleware)
and the CSV export (csvexport) show them as their code point instead.
"""

import re

BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise_bidi(text: str) -> str:
    """``text`` with each bidi control written as its code point: "[U+202E]"."""
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
