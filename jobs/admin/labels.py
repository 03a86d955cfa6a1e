"""Every admin widget with an accessible name (issue 20, axe): Django's admin leaves some unnamed.

A tabular inline's cells have no <label> (its column header is not one), a split date-time's two boxes
share one label, and a select2 autocomplete shows its own combobox in place of the labelled select.
The mixins give each an aria-label from its field's label; static/ipsadmin-admin.js hands a select's
name on to the select2 box that stands in for it."""

from __future__ import annotations

from django import forms
from django.contrib.admin.widgets import AutocompleteMixin, RelatedFieldWidgetWrapper
from django.utils.translation import gettext


def name_widget(formfield, *, in_table: bool) -> None:
    """Name the formfield's widget (and its parts) after its label; ``in_table``: an inline's cell."""
    if formfield is None:
        return
    widget = formfield.widget
    if isinstance(widget, RelatedFieldWidgetWrapper):
        widget = widget.widget
    label = formfield.label
    if isinstance(widget, forms.SplitDateTimeWidget):
        date, time = widget.widgets
        date.attrs.setdefault("aria-label", gettext("%(field)s: date") % {"field": label})
        time.attrs.setdefault("aria-label", gettext("%(field)s: time") % {"field": label})
    elif in_table or isinstance(widget, AutocompleteMixin):
        widget.attrs.setdefault("aria-label", label)


class NamedWidgets:
    """ModelAdmin mixin: split date-times' parts and autocompletes named."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        name_widget(formfield, in_table=False)
        return formfield


class NamedInlineWidgets:
    """InlineModelAdmin mixin: every cell's widget named after its column, each row's Delete box by its row."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        name_widget(formfield, in_table=True)
        return formfield

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)

        class NamedDeleteFormSet(formset):
            def add_fields(self, form, index):
                super().add_fields(form, index)
                delete = form.fields.get("DELETE")
                if delete is not None:
                    delete.widget.attrs["aria-label"] = (
                        gettext("Delete row %(row)s") % {"row": index + 1} if index is not None else gettext("Delete")
                    )

        NamedDeleteFormSet.__name__ = formset.__name__
        return NamedDeleteFormSet
