"""The HTTP status of each answer the dashboard gives, and the htmx config built from them.

Views answer with these statuses; base.html's htmx-config (context_processors)
swaps exactly these error statuses into the page.
"""

from __future__ import annotations

import json

from .models import Execution

Outcome = Execution.Outcome

# The HTTP status of each answer the dashboard gives, by what happened. htmx
# swaps exactly these error statuses into the page (base.html's htmx-config is
# built from SWAPPED_ERRORS): every other 4xx/5xx is left alone and logged.
RUN_STATUS = {
    Outcome.ACCEPTED: 200,
    Outcome.DENIED: 403,
    Outcome.ALREADY_RUNNING: 409,
    Outcome.JOB_GONE: 409,
    Outcome.REFUSED: 502,
    Outcome.UNREACHABLE: 502,
    Outcome.BAD_REPLY: 502,
    Outcome.ERROR: 502,
    Outcome.TIMED_OUT: 504,
    Outcome.NOT_RUNNING: 409,
    Outcome.IPS_ERROR: 502,
    Outcome.INTERRUPTED: 502,
}


NOT_FOUND_STATUS = 404


SYNC_FAILED_STATUS = 502


SWAPPED_ERRORS = sorted({*RUN_STATUS.values(), NOT_FOUND_STATUS, SYNC_FAILED_STATUS} - {200})


def htmx_config() -> str:
    """base.html's htmx-config: our own refusals are swapped in, not dropped; no eval, no inline styles (CSP)."""
    codes = "|".join(str(c) for c in SWAPPED_ERRORS)
    return json.dumps(
        {
            "allowEval": False,
            "includeIndicatorStyles": False,
            "responseHandling": [
                {"code": "204", "swap": False},
                {"code": "[23]..", "swap": True},
                {"code": f"({codes})", "swap": True, "error": False},
                {"code": "[45]..", "swap": False, "error": True},
            ],
        },
        separators=(",", ":"),
    )
