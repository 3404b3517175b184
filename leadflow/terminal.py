"""Text from data, made safe for a terminal: every console line leadflow prints goes through here.

Lead ids, event types, owners, reasons, file names and error details come from producers and users.
Printed raw they could break Rich (``[/]`` raises ``MarkupError``), render as markup (a clickable
``[link=…]``), or drive the terminal itself (``ESC]0;…BEL`` sets the window title, ``ESC[31m``
colours everything after it). :func:`plain` removes control characters; :func:`safe` also escapes
Rich markup, for text that Rich renders.
"""

from __future__ import annotations

import re
from typing import Final

from rich.markup import escape

#: C0 controls (tab and newline included: one value, one line), DEL, C1 controls (``\x9b`` is a
#: one-byte CSI), and the Unicode bidirectional overrides and isolates that reorder what is shown.
_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(text: object) -> str:
    """``text`` as a string without control characters (for lines printed without Rich)."""
    return _CONTROLS.sub("", str(text))


def safe(text: object) -> str:
    """``text`` without control characters and with Rich markup escaped: safe inside markup."""
    return escape(plain(text))
