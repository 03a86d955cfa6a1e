"""Who may change IPS memberships, and that every change is recorded.

Only superusers and holders of `jobs.grant_ips_roles` change memberships, and nobody
their own; Django's membership permissions alone are not enough. Each change is a
`MembershipChange` row, append-only under the one guard of the audit trail (the ORM's
and PostgreSQL's): never changed, deleted nor truncated. Deleting a user (or a company)
records the memberships it takes away.
"""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import Company, Membership, MembershipChange
from jobs.services import people

from .conftest import SUPERUSER
from .pg_roles import app_role, careless_role  # noqa: F401  (fixtures)


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


# --- The record is append-only, like the audit trail ---------------------------------


@pytest.fixture
def change(users, company):
    return people.change_membership(users[SUPERUSER], users["IpsUser"], company, "IpsAdmin", "admin")


def test_the_record_cannot_be_changed_or_deleted_through_the_orm(change):
    for attempt in (
        lambda: MembershipChange.objects.update(role_after="TrialSiteUser"),
        lambda: MembershipChange.objects.filter(pk=change.pk).update(actor_name="nobody"),
        lambda: MembershipChange.objects.all().delete(),
        lambda: MembershipChange.objects.all()._raw_delete(MembershipChange.objects.db),
        lambda: MembershipChange._base_manager.filter(pk=change.pk).update(username="x"),
        lambda: MembershipChange.objects.bulk_update([change], ["role_after"]),
    ):
        with pytest.raises(PermissionError):
            attempt()
    loaded = MembershipChange.objects.get(pk=change.pk)
    loaded.role_after = "TrialSiteUser"
    with pytest.raises(PermissionError):
        loaded.save()
    partial = MembershipChange.objects.only("id").get(pk=change.pk)
    partial.role_after = "TrialSiteUser"
    with pytest.raises(PermissionError):
        partial.save()
    stored = MembershipChange.objects.get()
    assert (stored.role_after, stored.actor_name, stored.username) == ("IpsAdmin", "admin", "ipsuser")


@pytest.mark.postgres
@pytest.mark.parametrize("sql", [
    "UPDATE jobs_membershipchange SET role_after = 'TrialSiteUser'",
    "UPDATE jobs_membershipchange SET actor_id = NULL",
])
def test_the_app_role_cannot_change_the_record(app_role, change, sql):
    with pytest.raises(DatabaseError, match="jobs_membershipchange is a record"):
        app_role.run(sql)
    stored = MembershipChange.objects.get()
    assert (stored.role_after, stored.actor_id) == ("IpsAdmin", change.actor_id)


@pytest.mark.postgres
@pytest.mark.parametrize("sql", [
    "DELETE FROM jobs_membershipchange",
    "SET CONSTRAINTS ALL IMMEDIATE; TRUNCATE jobs_membershipchange",
])
def test_nobody_deletes_or_empties_the_record(app_role, careless_role, change, sql):
    with pytest.raises(DatabaseError, match="permission denied"):
        app_role.run(sql)
    # Granted DELETE or TRUNCATE by mistake, still refused by the guard.
    with pytest.raises(DatabaseError, match="jobs_membershipchange is a record"):
        careless_role.run(sql)
    assert MembershipChange.objects.count() == 1


@pytest.mark.postgres
def test_the_app_role_cannot_backdate_a_change(app_role, users, company):
    sql = ("INSERT INTO jobs_membershipchange (at, source, actor_name, user_id, username, company_id, company_handle,"
           " role_before, role_after) VALUES (%s, 'admin', 'admin', %s, 'ipsuser', %s, '47', '', 'IpsAdmin')")
    with pytest.raises(DatabaseError, match="at is the present time"):
        app_role.run(sql, [timezone.now() - dt.timedelta(days=30), users["IpsUser"].pk, company.pk])
    app_role.run(sql, [timezone.now(), users["IpsUser"].pk, company.pk])
    assert MembershipChange.objects.count() == 1


def test_deleting_a_user_records_the_memberships_it_takes_away(users, company, other_company):
    user = users["IpsUser"]
    Membership.objects.create(user=user, company=other_company, role="TrialSiteUser")
    user.delete()
    changes = MembershipChange.objects.order_by("company_handle")
    assert [(c.username, c.company_handle, c.role_before, c.role_after, c.source, c.user_id) for c in changes] == [
        ("ipsuser", "47", "IpsUser", "", "user_deleted", None),
        ("ipsuser", "48", "TrialSiteUser", "", "user_deleted", None),
    ]
    assert not Membership.objects.filter(user_id=user.pk).exists()


def test_deleting_users_in_the_admin_records_their_memberships(users):
    admin = Client()
    admin.force_login(users[SUPERUSER])
    targets = [users["IpsUser"].pk, users["TrialSiteUser"].pk]
    response = admin.post(reverse("admin:auth_user_changelist"),
                          {"action": "delete_selected", "_selected_action": targets, "post": "yes"})
    assert response.status_code == 302
    assert sorted(MembershipChange.objects.values_list("username", "role_before", "source")) == [
        ("ipsuser", "IpsUser", "user_deleted"),
        ("trialsiteuser", "TrialSiteUser", "user_deleted"),
    ]


def test_deleting_a_company_records_the_memberships_it_takes_away(users, other_company):
    Company.objects.get(pk=other_company.pk).delete()
    [change] = MembershipChange.objects.all()
    assert (change.username, change.company_handle, change.role_before, change.source, change.company_id) == (
        "othercompany", "48", "IpsAdmin", "company_deleted", None)
    assert change.user_id == users["othercompany"].pk


def test_a_membership_taken_away_by_change_membership_is_recorded_once(users, company):
    people.change_membership(users[SUPERUSER], users["IpsUser"], company, None, "admin")
    assert MembershipChange.objects.get().source == "admin"


@pytest.mark.postgres
def test_deleting_a_user_as_the_app_role_records_the_memberships(app_role, users):
    with app_role.acting():
        users["IpsUser"].delete()
    [change] = MembershipChange.objects.all()
    assert (change.username, change.source, change.user_id) == ("ipsuser", "user_deleted", None)


@pytest.mark.parametrize("how", ["change page", "delete selected"])
def test_deleting_users_in_the_admin_names_who_deleted(how, users):
    boss = users[SUPERUSER]
    admin = Client()
    admin.force_login(boss)
    target = users["IpsUser"]
    if how == "change page":
        response = admin.post(reverse("admin:auth_user_delete", args=[target.pk]), {"post": "yes"})
    else:
        response = admin.post(reverse("admin:auth_user_changelist"),
                              {"action": "delete_selected", "_selected_action": [target.pk], "post": "yes"})
    assert response.status_code == 302
    assert list(MembershipChange.objects.values_list("username", "role_before", "source", "actor_id", "actor_name")) == [
        ("ipsuser", "IpsUser", "user_deleted", boss.pk, "admin"),
    ]


@pytest.mark.parametrize("how", ["change page", "delete selected"])
def test_deleting_companies_in_the_admin_names_who_deleted(how, users, other_company):
    boss = users[SUPERUSER]
    admin = Client()
    admin.force_login(boss)
    if how == "change page":
        response = admin.post(reverse("admin:jobs_company_delete", args=[other_company.pk]), {"post": "yes"})
    else:
        response = admin.post(reverse("admin:jobs_company_changelist"),
                              {"action": "delete_selected", "_selected_action": [other_company.pk], "post": "yes"})
    assert response.status_code == 302
    assert not Company.objects.filter(pk=other_company.pk).exists()
    assert list(MembershipChange.objects.values_list("username", "company_handle", "source", "actor_id")) == [
        ("othercompany", "48", "company_deleted", boss.pk),
    ]
