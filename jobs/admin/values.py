"""Values the admin shows in words the reader reads: times with their zone, yes/no in the page's language.

Django's admin prints a datetime in the active zone with no zone at all, and a
boolean as an icon whose alt text is Python's "True", "False" or "None" in any
language. Each admin here shows its model's datetime and boolean columns and
read-only fields through a "<name>_shown" display (same label, sorted by the
field): "2026-12-06 18:03:04 CET", in the user's zone (jobs.timezones), and an
icon named "yes", "no" or "unknown". A value that is typed in stays Django's widget.
"""

from __future__ import annotations

import types

from django.db import models
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext

from .labels import NamedWidgets

SUFFIX = "_shown"


def at(value) -> str:
    """A time in the active zone, with the zone's abbreviation; "—" for none."""
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S %Z}" if value else "—"


def icon(value: bool | None) -> str:
    """Django's yes/no/unknown icon, named in the page's language."""
    name = {True: "yes", False: "no", None: "unknown"}[value]
    alt = {True: gettext("yes"), False: gettext("no"), None: gettext("unknown")}[value]
    return format_html('<img src="{}" alt="{}">', static(f"admin/img/icon-{name}.svg"), alt)


def _display(field: models.Field):
    if isinstance(field, models.BooleanField):
        def show(obj):
            return icon(getattr(obj, field.attname))
    else:
        def show(obj):
            return at(getattr(obj, field.attname))

    show.short_description = field.verbose_name
    show.admin_order_field = field.name
    show.__name__ = field.name + SUFFIX
    return show


def boolean(description):
    """A display method returning True/False/None, shown as a named icon (for ``@admin.display(boolean=True)``)."""
    def decorate(method):
        def show(admin, obj):
            return icon(method(admin, obj))

        show.short_description = description
        show.__name__ = method.__name__
        return show

    return decorate


class ReadableValues(NamedWidgets):
    """ModelAdmin mixin: datetime and boolean list columns and read-only fields shown as above (and,
    through NamedWidgets, every widget it leaves typed in named for assistive technology)."""

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        self._shown = {
            f.name: f.name + SUFFIX for f in model._meta.concrete_fields
            if isinstance(f, (models.DateTimeField, models.BooleanField))
        }
        for name, shown in self._shown.items():
            setattr(self, shown, _display(model._meta.get_field(name)))
        # Wrapped on the instance: whatever a subclass's own get_readonly_fields (and the others) return
        # is mapped, whether or not it calls super().
        for hook in ("get_list_display", "get_sortable_by", "get_readonly_fields"):
            setattr(self, hook, self._mapping(getattr(self, hook)))

    def _mapping(self, hook):
        def mapped(admin, *args, **kwargs):
            return admin._shown_names(hook(*args, **kwargs))

        return types.MethodType(mapped, self)  # a bound method, as Django's checks expect

    def _shown_names(self, names, only=None):
        return [self._shown.get(n, n) if isinstance(n, str) and (only is None or n in only) else n for n in names]

    def get_exclude(self, request, obj=None):
        # The field itself stays out of the form where its display stands in for it.
        readonly = set(self.get_readonly_fields(request, obj))
        shown = [name for name, display in self._shown.items() if display in readonly]
        return [*(super().get_exclude(request, obj) or []), *shown] or None

    def get_fieldsets(self, request, obj=None):
        readonly = set(self.get_readonly_fields(request, obj))
        view_only = obj is not None and not self.has_change_permission(request, obj)
        only = set(self._shown) if view_only else {n for n, d in self._shown.items() if d in readonly}
        fieldsets = super().get_fieldsets(request, obj)
        return [
            (title, {**options, "fields": [
                tuple(self._shown_names(f, only)) if isinstance(f, (list, tuple)) else self._shown_names([f], only)[0]
                for f in options["fields"]
            ]})
            for title, options in fieldsets
        ]
