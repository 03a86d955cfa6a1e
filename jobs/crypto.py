"""Encryption at rest for IPS passwords (Fernet: AES-CBC with an HMAC)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> Fernet:
    key = settings.IPSADMIN_ENCRYPTION_KEY
    if not key:
        # Development only: settings refuse to start without a key when DEBUG is off.
        key = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
    try:
        return Fernet(key)
    except ValueError:
        raise ImproperlyConfigured("IPSADMIN_ENCRYPTION_KEY is not a valid Fernet key.") from None


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored IPS password cannot be decrypted with the configured "
            "IPSADMIN_ENCRYPTION_KEY; set the password again in the admin."
        ) from None
