"""Bidirectional control characters in IPS data are shown as code points, not obeyed."""

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from jobs.models import Job


def test_bidi_controls_in_ips_data_are_shown_not_obeyed(client, login, company, ips_emulator):
    from jobs.services import sync

    name = "Invoice \u202egpj.exe"
    ips_emulator.state.add_job("47", name)
    assert not sync.sync_company(company).error
    job = Job.objects.get(company=company, name=name)
    assert job.name == name  # stored as IPS has it
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert "\u202e" not in body
    assert "Invoice [U+202E]gpj.exe" in body
    admin_body = Client()
    admin_body.force_login(get_user_model().objects.create_superuser("root", password="x"))
    page = admin_body.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "\u202e" not in page
