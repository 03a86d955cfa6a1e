"""Log lines are one JSON object each: a newline in a value cannot forge another line."""

import io
import json
import logging

from django.urls import reverse

from .conftest import HTMX


def test_a_value_with_a_newline_cannot_forge_a_log_line(settings, client, login, job, ips_emulator):
    from django.utils.log import configure_logging

    stream = io.StringIO()
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    try:
        ips_emulator.state.inject("soap_fault", operation="executeJob", code=30000,
                                  reason='Disk full\n{"level": "INFO", "message": "FORGED all good"}')
        login("IpsUser")
        client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    finally:
        handler.setStream(__import__("sys").stderr)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = [r for r in records if r["logger"].startswith("jobs.services.")]
    assert mine and all(r["request_id"] != "-" for r in mine)
    assert not any(r.get("message") == "FORGED all good" for r in records)
    assert any("FORGED all good" in r["message"] and "Disk full" in r["message"] for r in mine)
