"""Text from the API made safe to print in a terminal: escape sequences and control characters removed.

A critique, a scenario name or any value a query returns is data someone else wrote. Printed as is, an
escape sequence in it is obeyed by the terminal: it can clear the screen, recolour or hide what follows,
move the cursor to overwrite earlier lines, set the window title or plant a hyperlink whose text says one
thing and whose target another. Rich, which draws the tables, strips only a few C0 controls (BEL, BS,
CR, ...) and passes ESC through, so every piece of API text meets :func:`terminal_safe` before it is
printed. The HTML report escapes instead, and CSV written to a file or a pipe stays faithful.
"""

from __future__ import annotations

import re

__all__ = ["terminal_safe"]

_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]          # CSI: colours, cursor moves, clear screen
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)
                                                                    # OSC (title, hyperlink), DCS, SOS, PM, APC
    | \x1b [\x20-\x2f]* [\x30-\x7e]                                 # any other escape: ESC 7, ESC ( 0, ESC c
    """,
    re.VERBOSE,
)
"""A whole escape sequence, in its 7-bit (ESC ...) or 8-bit (C1) form, terminator included.

A string sequence (OSC and the like) with no terminator loses only its introducer: its text stays
visible, since a person should see what the API sent rather than lose the rest of a critique.
"""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 controls but tab and newline (harmless: a table cell wraps them), DEL, C1 controls, and the
Unicode bidirectional embeddings, overrides and isolates, which reorder how a line reads ("Trojan Source")."""


def terminal_safe(text: str) -> str:
    """`text` without escape sequences or control characters (tab and newline kept), for a terminal."""
    if text.isprintable():  # the common case: no control, format or separator character at all
        return text
    return _CONTROL.sub("", _SEQUENCE.sub("", text))
