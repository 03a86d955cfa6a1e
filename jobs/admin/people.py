"""People: memberships (each change through services.people, recorded), users, groups, IPS identities."""

import logging

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters

from ..models import IpsIdentity, Membership, MembershipChange
from ..services import people
from .labels import NamedInlineWidgets
from .records import ReadOnlyAdmin
from .values import ReadableValues

# Named, not __name__: the privilege log line has always been the admin's.
log = logging.getLogger("jobs.admin")


def may_grant_roles(user) -> bool:
    """Superusers, and holders of jobs.grant_ips_roles: Django's membership permissions are not enough."""
    return user.is_active and (user.is_superuser or user.has_perm("jobs.grant_ips_roles"))


class _GrantsRoles:
    """Admin rights over memberships: only who may grant IPS user types, and never on their own."""

    def has_add_permission(self, request, obj=None):
        return may_grant_roles(request.user) and not self._is_own(request, obj)

    def has_change_permission(self, request, obj=None):
        return may_grant_roles(request.user) and not self._is_own(request, obj)

    def has_delete_permission(self, request, obj=None):
        return may_grant_roles(request.user) and not self._is_own(request, obj)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and (
            may_grant_roles(request.user) or super().has_view_permission(request, obj)
        )

    @staticmethod
    def _is_own(request, obj) -> bool:
        """A membership of one's own, or (inline on the user page) one's own user."""
        if isinstance(obj, Membership):
            return obj.user_id == request.user.pk
        if isinstance(obj, get_user_model()):
            return obj.pk == request.user.pk
        return False


class MembershipInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        for form in self.forms:
            data = getattr(form, "cleaned_data", {})
            user_id = data["user"].pk if data.get("user") else form.instance.user_id
            touched = form.has_changed() or data.get("DELETE")
            if touched and user_id == self.request_user.pk:
                raise forms.ValidationError(_("Nobody changes their own IPS user type: ask another administrator."))


class MembershipInline(_GrantsRoles, NamedInlineWidgets, admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "company", "role", "from_ips", "read_at"]
    readonly_fields = ["from_ips", "read_at"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.request_user = request.user
        return formset


class CompanyMembershipInline(MembershipInline):
    autocomplete_fields = ["company"]


def _save_membership_formset(request, formset) -> None:
    """Every membership change of an inline goes through people.change_membership (recorded)."""
    for obj in formset.save(commit=False):
        people.change_membership(request.user, obj.user, obj.company, obj.role, MembershipChange.Source.ADMIN)
    for obj in formset.deleted_objects:
        people.change_membership(request.user, obj.user, obj.company, None, MembershipChange.Source.ADMIN)


class MembershipsByServiceMixin:
    def save_formset(self, request, form, formset, change):
        if formset.model is Membership:
            _save_membership_formset(request, formset)
        else:
            super().save_formset(request, form, formset, change)


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "company", "role"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        if user.pk == self.request_user.pk:
            raise forms.ValidationError(_("Nobody changes their own IPS user type: ask another administrator."))
        return user


@admin.register(Membership)
class MembershipAdmin(_GrantsRoles, ReadableValues, admin.ModelAdmin):
    form = MembershipForm
    list_display = ["user", "company", "role", "origin", "read_at"]
    list_filter = ["role", "from_ips", "company"]

    @admin.display(description=_("from"), ordering="from_ips")
    def origin(self, obj):
        return "IPS" if obj.from_ips else _("manual")
    search_fields = ["user__username", "company__name", "company__handle"]
    autocomplete_fields = ["user", "company"]

    def get_readonly_fields(self, request, obj=None):
        # A membership is one user in one company: to move it, remove it and add another.
        return ["user", "company"] if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user
        return form

    def save_model(self, request, obj, form, change):
        people.change_membership(request.user, obj.user, obj.company, obj.role, MembershipChange.Source.ADMIN)
        obj.pk = Membership.objects.get(user=obj.user, company=obj.company).pk

    def delete_model(self, request, obj):
        people.change_membership(request.user, obj.user, obj.company, None, MembershipChange.Source.ADMIN)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("user", "company"):
            if obj.user_id == request.user.pk:
                raise PermissionDenied(_("Nobody changes their own IPS user type."))
            self.delete_model(request, obj)


def remove_memberships(request, memberships, source: str) -> None:
    """Before a user or company is deleted: its memberships go through people.change_membership,
    recorded with who deleted (the database's cascade would record nobody)."""
    for membership in memberships.select_related("user", "company"):
        people.change_membership(request.user, membership.user, membership.company, None, source)


class RecordsMembershipsOnDelete:
    """Deleting the admin's objects removes their memberships first, recorded: ``memberships_of(objs)``."""

    membership_source = ""

    def memberships_of(self, objs):
        raise NotImplementedError

    def delete_model(self, request, obj):
        with transaction.atomic():
            remove_memberships(request, self.memberships_of([obj]), self.membership_source)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            remove_memberships(request, self.memberships_of(queryset), self.membership_source)
            super().delete_queryset(request, queryset)


@admin.register(IpsIdentity)
class IpsIdentityAdmin(ReadOnlyAdmin):
    """Who signs in with IPS: read from IPS, changed only by it."""

    list_display = ["email", "user", "connection", "default_role", "password_expires", "read_at"]
    list_filter = ["connection", "default_role"]
    search_fields = ["email", "user__username"]
    list_select_related = ["user", "connection"]

    def has_delete_permission(self, request, obj=None):
        # Deleting its user ends it; an administrator may also end it here.
        return super(ReadOnlyAdmin, self).has_delete_permission(request, obj)


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdmin):
    """The record of membership changes: visible to administrators, changeable by nobody."""

    list_display = ["at", "username", "company_handle", "role_before", "role_after", "source", "actor_name"]
    list_filter = ["source", "company"]
    search_fields = ["username", "actor_name", "company_handle"]
    list_select_related = ["company"]



User = get_user_model()
admin.site.unregister(User)


#: What makes an account more than its memberships: only superusers give it, never to themselves.
PRIVILEGE_FIELDS = ["is_superuser", "is_staff", "groups", "user_permissions"]


def _privileges(user) -> dict:
    return {
        "is_superuser": user.is_superuser,
        "is_staff": user.is_staff,
        "is_active": user.is_active,
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "user_permissions": sorted(
            f"{app}.{codename}"
            for app, codename in user.user_permissions.values_list("content_type__app_label", "codename")
        ),
    }


@admin.register(User)
class IpsUserAdmin(RecordsMembershipsOnDelete, MembershipsByServiceMixin, ReadableValues, UserAdmin):
    """Accounts. Holding the user permissions is not holding every permission: privileges
    (superuser, staff, groups, permissions) are a superuser's to give, never one's own, and
    a privileged account is administered by superusers only (its password included)."""

    inlines = [*UserAdmin.inlines, CompanyMembershipInline]
    membership_source = MembershipChange.Source.USER_DELETED

    def memberships_of(self, objs):
        return Membership.objects.filter(user__in=objs)

    @method_decorator(sensitive_post_parameters())
    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        if user is not None and not self._may_set_password(request, user):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)

    @staticmethod
    def _may_set_password(request, obj) -> bool:
        """Whoever sets an account's password can log in as it, and act with its memberships:
        only superusers set the password of an account that signs in with IPS (whose roles IPS
        gives) or holds memberships its administrator may not grant."""
        if request.user.is_superuser:
            return True
        if IpsIdentity.objects.filter(user_id=obj.pk).exists():
            return False
        return may_grant_roles(request.user) or not Membership.objects.filter(user_id=obj.pk).exists()

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and (not request.user.is_superuser or obj.pk == request.user.pk):
            fields += [f for f in PRIVILEGE_FIELDS if f not in fields]
        return fields

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_administer(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._may_administer(request, obj)

    @staticmethod
    def _may_administer(request, obj) -> bool:
        if obj is None or request.user.is_superuser or obj.pk == request.user.pk:
            return True
        return not (obj.is_superuser or obj.is_staff)

    def save_model(self, request, obj, form, change):
        stored = type(obj).objects.filter(pk=obj.pk).first() if change else None
        request._privileges_before = _privileges(stored) if stored is not None else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Groups and permissions are saved here, after the user: compare once all is saved.
        user = form.instance
        before = getattr(request, "_privileges_before", None) or {
            "is_superuser": False, "is_staff": False, "is_active": True, "groups": [], "user_permissions": [],
        }
        after = _privileges(user)
        changed = [f"{k}: {before[k]!r} → {v!r}" for k, v in after.items() if before[k] != v]
        if changed:
            log.warning(
                "%s changed the privileges of %s: %s",
                request.user.get_username(), user.get_username(), "; ".join(changed),
            )


admin.site.unregister(Group)


@admin.register(Group)
class SuperusersGroupAdmin(GroupAdmin):
    """A group carries permissions to its members: who could change one could give themselves anything."""

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser
