"""Encryption keys for IPS passwords: the development key is the checkout's own, and keys rotate."""

import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command

from jobs import crypto
from jobs.models import Connection


def test_the_development_key_is_the_checkouts_own(settings, tmp_path):
    import base64
    import hashlib

    settings.IPSADMIN_ENCRYPTION_KEY = ""
    settings.IPSADMIN_DEV_KEY_FILE = tmp_path / "dev-key"
    token = crypto.encrypt("s3cret")
    assert settings.IPSADMIN_DEV_KEY_FILE.stat().st_mode & 0o777 == 0o600
    public = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
    with pytest.raises(InvalidToken):
        Fernet(public).decrypt(token.encode())
    assert crypto.decrypt(token) == "s3cret"  # the same key next time
    assert Fernet(settings.IPSADMIN_DEV_KEY_FILE.read_bytes().strip()).decrypt(token.encode()) == b"s3cret"


def test_keys_rotate(db, settings, ips_emulator):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.IPSADMIN_ENCRYPTION_KEY = old
    conn = Connection(name="Rotating", service_url=ips_emulator.service_url, username="service@example.com")
    conn.set_password("demo")
    conn.save()
    settings.IPSADMIN_ENCRYPTION_KEY = f"{new},{old}"
    assert conn.get_password() == "demo"  # still read with the old key
    out = io.StringIO()
    call_command("rotate_ips_passwords", stdout=out)
    assert "1 IPS password re-encrypted" in out.getvalue()
    settings.IPSADMIN_ENCRYPTION_KEY = new
    assert Connection.objects.get(pk=conn.pk).get_password() == "demo"


def test_keys_rotate_for_notification_targets_and_secrets_too(db, settings, django_user_model):
    from jobs.models import Subscription

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.IPSADMIN_ENCRYPTION_KEY = old
    user = django_user_model.objects.create(username="hooked")
    hook = Subscription(user=user, scope="mine", channel="webhook", on_errors=True)
    hook.set_target("https://hooks.example.com/ipsadmin?token=abc")
    secret = hook.new_secret()
    hook.save()
    email = Subscription.objects.create(user=user, scope="mine", channel="email", on_errors=True)
    settings.IPSADMIN_ENCRYPTION_KEY = f"{new},{old}"
    out = io.StringIO()
    call_command("rotate_ips_passwords", stdout=out)
    assert "1 notification target re-encrypted" in out.getvalue()
    settings.IPSADMIN_ENCRYPTION_KEY = new
    hook = Subscription.objects.get(pk=hook.pk)
    assert hook.target() == "https://hooks.example.com/ipsadmin?token=abc" and hook.secret() == secret
    assert Subscription.objects.get(pk=email.pk).target() == ""
