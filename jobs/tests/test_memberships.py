"""Who may change IPS memberships, and that every change is recorded.

Only superusers and holders of `jobs.grant_ips_roles` change memberships, and nobody
their own; Django's membership permissions alone are not enough. Each change is a
`MembershipChange` row that cannot be deleted.
"""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from jobs.models import Membership, MembershipChange

from .conftest import SUPERUSER


@pytest.fixture
def staff(db, users, company):
    """A staff user, IpsCompanyAdmin in 47, with Django's membership permissions."""
    user = users["IpsCompanyAdmin"]
    user.is_staff = True
    user.save()
    perms = Permission.objects.filter(codename__in=["add_membership", "change_membership", "delete_membership",
                                                    "view_membership", "view_company", "view_user"])
    user.user_permissions.add(*perms)
    client = Client()
    client.force_login(user)
    return user, client


def _membership_form(membership, role):
    return {"role": role, "_save": "Save"}


def test_staff_cannot_raise_their_own_role(staff, company):
    user, client = staff
    own = Membership.objects.get(user=user, company=company)
    response = client.post(reverse("admin:jobs_membership_change", args=[own.pk]), _membership_form(own, "IpsAdmin"))
    assert response.status_code == 403
    assert Membership.objects.get(pk=own.pk).role == "IpsCompanyAdmin"


def test_staff_cannot_add_themselves_to_another_company(staff, other_company):
    user, client = staff
    response = client.post(reverse("admin:jobs_membership_add"),
                           {"user": user.pk, "company": other_company.pk, "role": "IpsAdmin", "_save": "Save"})
    assert response.status_code == 403
    assert not Membership.objects.filter(user=user, company=other_company).exists()


def test_even_who_may_grant_roles_cannot_grant_their_own(staff, company, other_company):
    user, client = staff
    user.user_permissions.add(Permission.objects.get(codename="grant_ips_roles"))
    own = Membership.objects.get(user=user, company=company)
    assert client.post(reverse("admin:jobs_membership_change", args=[own.pk]),
                       _membership_form(own, "IpsAdmin")).status_code == 403
    response = client.post(reverse("admin:jobs_membership_add"),
                           {"user": user.pk, "company": other_company.pk, "role": "IpsAdmin", "_save": "Save"})
    assert "Nobody changes their own IPS user type" in response.content.decode()
    assert not Membership.objects.filter(user=user, company=other_company).exists()
    # Not through the inline of the company page either.
    page = client.get(reverse("admin:jobs_company_change", args=[company.pk]))
    assert page.status_code in (200, 403)
    assert Membership.objects.get(pk=own.pk).role == "IpsCompanyAdmin"


def test_who_may_grant_roles_changes_others_and_it_is_recorded(staff, users, company):
    user, client = staff
    user.user_permissions.add(Permission.objects.get(codename="grant_ips_roles"))
    target = Membership.objects.get(user=users["TrialSiteUser"], company=company)
    response = client.post(reverse("admin:jobs_membership_change", args=[target.pk]),
                           _membership_form(target, "ImagePortalUser"))
    assert response.status_code == 302, response.content[:500]
    assert Membership.objects.get(pk=target.pk).role == "ImagePortalUser"
    [change] = MembershipChange.objects.all()
    assert (change.actor_name, change.username, change.company_handle, change.role_before, change.role_after,
            change.source) == ("ipscompanyadmin", "trialsiteuser", "47", "TrialSiteUser", "ImagePortalUser", "admin")
    # Taking rights away takes effect at the next request.
    assert company.role_of(users["TrialSiteUser"]) == "ImagePortalUser"
    admin = Client()
    admin.force_login(users[SUPERUSER])
    assert "ImagePortalUser" in admin.get(reverse("admin:jobs_membershipchange_changelist")).content.decode()
    with pytest.raises(PermissionError):
        change.delete()


def test_a_superuser_removes_a_membership_and_it_is_recorded(users, company):
    admin = Client()
    admin.force_login(users[SUPERUSER])
    target = Membership.objects.get(user=users["IpsUser"], company=company)
    response = admin.post(reverse("admin:jobs_membership_delete", args=[target.pk]), {"post": "yes"})
    assert response.status_code == 302
    [change] = MembershipChange.objects.all()
    assert (change.role_before, change.role_after, change.actor_name) == ("IpsUser", "", "admin")
