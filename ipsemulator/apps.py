from django.apps import AppConfig


class IpsEmulatorConfig(AppConfig):
    # Installed only so that `manage.py ipsemulator` exists; the emulator
    # itself is a plain WSGI app with no Django models.
    name = "ipsemulator"
    verbose_name = "IPS emulator"
