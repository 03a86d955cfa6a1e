"""Encryption at rest for IPS passwords (Fernet: AES-CBC with an HMAC), with key rotation."""

import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _development_key() -> bytes:
    """This checkout's own key, generated on first use; readable by its owner only."""
    path = settings.IPSADMIN_DEV_KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def keys() -> list[bytes]:
    configured = [k.strip() for k in settings.IPSADMIN_ENCRYPTION_KEY.split(",") if k.strip()]
    if configured:
        return [k.encode() for k in configured]
    # Development only: settings refuse to start without a key when DEBUG is off.
    return [_development_key()]


def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys()])
    except ValueError:
        raise ImproperlyConfigured("IPSADMIN_ENCRYPTION_KEY holds a key that is not a valid Fernet key.") from None


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


def rotate(token: str) -> str:
    """The same secret, encrypted with the first key (decrypted with any)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored IPS password cannot be decrypted with any key of IPSADMIN_ENCRYPTION_KEY."
        ) from None
