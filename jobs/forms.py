import datetime as dt

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Value
from django.db.models.functions import Length, Lower
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .history import DEFAULT_SORT, SORTS, Split, Term
from .models import Execution, Job, Subscription
from .timezones import zone_choices


class HistoryFilterForm(forms.Form):
    """History's filters, every one in the page's address and served by an index.

    Names typed for a job or a user are looked up in the (small) job and user
    tables first, case-insensitively: a whole name picks that one, a part picks
    every match (up to MAX_MATCHES; more must be narrowed, never cut silently).
    The audit rows are then filtered by job keys and user names, which their
    indexes serve."""

    RANGES = [
        ("", _("Any time")),
        ("1h", _("Last hour")),
        ("24h", _("Last 24 hours")),
        ("today", _("Today")),
        ("7d", _("Last 7 days")),
        ("30d", _("Last 30 days")),
        ("custom", _("From … to …")),
    ]
    PRESETS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}
    MAX_MATCHES = 50
    #: Dates a filter may name: in any zone, a day past the last is still a datetime (no OverflowError).
    EARLIEST, LATEST = dt.date(1900, 1, 1), dt.date(9999, 12, 30)
    #: How many user names the user field suggests.
    MAX_SUGGESTIONS = 200

    range = forms.ChoiceField(label=_("When"), required=False, choices=RANGES)
    company = forms.TypedChoiceField(label=_("Company"), required=False, coerce=int, empty_value=None)
    job = forms.IntegerField(required=False, widget=forms.HiddenInput)
    job_name = forms.CharField(label=_("Job"), required=False, max_length=200)
    user = forms.CharField(label=_("User"), required=False, max_length=150)
    who = forms.ChoiceField(label=_("Whose"), required=False, choices=[("", _("Everyone's")), ("mine", _("Mine"))])
    started_by = forms.ChoiceField(label=_("Started by"), required=False)
    outcome = forms.ChoiceField(label=_("Outcome"), required=False)
    ips_result = forms.ChoiceField(label=_("IPS result"), required=False)
    sort = forms.ChoiceField(required=False, choices=[(k, s.label) for k, s in SORTS.items()], widget=forms.HiddenInput)

    #: The order of the parameters in the page's address.
    PARAMS = ["range", "from", "to", "company", "job", "job_name", "user", "who", "started_by", "outcome", "ips_result",
              "sort"]

    def __init__(self, *args, companies, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.companies = {c.pk: c for c in companies}
        self.request_user = user
        # "from" is a keyword in Python: these two are added by name.
        for name, label in (("from", _("From")), ("to", _("To"))):
            self.fields[name] = forms.DateTimeField(
                label=label,
                required=False,
                widget=forms.DateTimeInput(
                    attrs={"type": "datetime-local", "min": f"{self.EARLIEST}T00:00", "max": f"{self.LATEST}T23:59"},
                    format="%Y-%m-%dT%H:%M",
                ),
            )
        self.fields["company"].choices = [("", _("All companies"))] + [
            (c.pk, f"{c.name} ({c.handle})") for c in sorted(companies, key=lambda c: (c.name, c.handle))
        ]
        self.fields["started_by"].choices = [("", _("Anyone")), *Execution.StartedBy.choices]
        self.fields["outcome"].choices = [("", _("All outcomes")), *Execution.Outcome.choices]
        self.fields["ips_result"].choices = [("", _("All results")), *Execution.IpsResult.choices]
        self.chosen_job = None
        self.job_ids: list[int] | None = None
        self.job_names: list[str] = []
        self.usernames: list[str] | None = None

    # --- What the form offers -----------------------------------------------------------

    def user_suggestions(self) -> list[str]:
        """User names for the user field's list: members of the companies shown (all, for a superuser)."""
        users = get_user_model().objects.order_by("username")
        if not self.request_user.is_superuser:
            users = users.filter(memberships__company__in=list(self.companies)).distinct()
        return list(users.values_list("username", flat=True)[: self.MAX_SUGGESTIONS])

    # --- Cleaning -------------------------------------------------------------------------

    def clean_company(self):
        pk = self.cleaned_data.get("company")
        if pk is None:
            return None
        if pk not in self.companies:
            raise forms.ValidationError(gettext("Choose one of your companies."))
        return self.companies[pk]

    def clean_job(self):
        pk = self.cleaned_data.get("job")
        if pk is None:
            return None
        job = Job.objects.filter(pk=pk, company__in=list(self.companies)).select_related("company").first()
        if job is None:
            raise forms.ValidationError(gettext("No such job in your companies."))
        self.chosen_job = job
        return job

    def clean_job_name(self):
        text = self.cleaned_data.get("job_name", "").strip()
        if not text:
            return ""
        # Shortest names first: a whole name is among the first matches.
        matches = list(
            Job.objects.filter(company__in=list(self.companies), name__icontains=text)
            .order_by(Length("name"), "name", "pk")
            .values_list("pk", "name")[: self.MAX_MATCHES + 1]
        )
        exact = [(pk, name) for pk, name in matches if name.casefold() == text.casefold()]
        if not exact and len(matches) > self.MAX_MATCHES:
            raise forms.ValidationError(
                gettext("More than %(max)s jobs have “%(text)s” in their name: type more of it.")
                % {"max": self.MAX_MATCHES, "text": text}
            )
        chosen = exact or matches
        self.job_ids = [pk for pk, _ in chosen]
        self.job_names = sorted({name for _, name in chosen})
        return text

    def clean_user(self):
        text = self.cleaned_data.get("user", "").strip()
        if not text:
            return ""
        users = get_user_model().objects.filter(username__icontains=text)
        if not self.request_user.is_superuser:
            users = users.filter(memberships__company__in=list(self.companies)).distinct()
        matches = list(users.order_by(Length("username"), "username").values_list("username", flat=True)[: self.MAX_MATCHES + 1])
        exact = [n for n in matches if n.casefold() == text.casefold()]
        if not exact and len(matches) > self.MAX_MATCHES:
            raise forms.ValidationError(
                gettext("More than %(max)s users have “%(text)s” in their name: type more of it.")
                % {"max": self.MAX_MATCHES, "text": text}
            )
        # The name as typed, too: a deleted user's runs keep their name.
        self.usernames = exact or sorted({*matches, text})
        return text

    def clean(self):
        data = super().clean()
        shown = self.data.copy()
        if data.get("who") == "mine":
            self.usernames = [self.request_user.get_username()]
            data["user"] = ""
            shown.pop("user", None)
        start, end = data.get("from"), data.get("to")
        when = data.get("range") or ""
        # The page's form always sends "range"; an address typed by hand may
        # give only dates (?from=...): then they are the range.
        if not when and "range" not in self.data and (start or end):
            when = data["range"] = shown["range"] = "custom"
        if when != "custom":
            # A preset, or any time: dates left in the (hidden) fields do not count.
            data["from"] = data["to"] = None
            shown.pop("from", None)
            shown.pop("to", None)
        elif start or end:
            for name in ("from", "to"):
                value = data.get(name)
                if value is not None and not self.EARLIEST <= value.date() <= self.LATEST:
                    # Past these, a day more or the move to UTC overflows Python's datetime (a 500).
                    self.add_error(name, gettext("Choose a date from %(earliest)s to %(latest)s.")
                                   % {"earliest": self.EARLIEST, "latest": self.LATEST})
            start, end = data.get("from"), data.get("to")
            if end and len(self.data.get("to", "").strip()) <= len("2026-12-31"):
                # A date alone ends with its day.
                data["to"] = end = end + dt.timedelta(days=1)
            if start and end and start >= end:
                self.add_error("to", gettext("The end comes before the start."))
        # The form is shown again as it filters, so that the page, its address
        # and its fields always say the same.
        self.data = shown
        return data

    # --- Using it ---------------------------------------------------------------------------

    @property
    def chosen_sort(self):
        """The order of the rows (history.SORTS); newest first unless the address says otherwise."""
        return SORTS.get((getattr(self, "cleaned_data", None) or {}).get("sort") or "", DEFAULT_SORT)

    def period(self, now=None) -> tuple[dt.datetime | None, dt.datetime | None]:
        """[start, end) of the date filter, in absolute time (presets in the user's zone)."""
        data = self.cleaned_data
        when = data.get("range") or ""
        now = now or timezone.now()
        if when in self.PRESETS:
            return now - self.PRESETS[when], None
        if when == "today":
            midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            return midnight, None
        return data.get("from"), data.get("to")

    def filter(self, executions, now=None):
        data = self.cleaned_data
        if data.get("company"):
            executions = executions.filter(company_id=data["company"].pk)
        if data.get("job"):
            executions = executions.filter(job_id=data["job"].pk)
        if self.job_ids is not None:
            executions = executions.filter(job_id__in=self.job_ids)
        if self.usernames is not None:
            executions = executions.by_usernames(self.usernames)
        if data.get("started_by"):
            # Pressed here, the IPS schedule, another IPS client: index execution_started_by_recent.
            executions = executions.filter(started_by=data["started_by"])
        if data.get("outcome"):
            executions = executions.filter(outcome=data["outcome"])
        if data.get("ips_result"):
            executions = executions.filter(ips_result=data["ips_result"])
        start, end = self.period(now)
        if start:
            executions = executions.filter(requested_at__gte=start)
        if end:
            executions = executions.filter(requested_at__lt=end)
        return executions

    def terms(self, now=None) -> list[Term]:
        """The filters of filter(), as terms of history.plan(): each with an index of its own."""
        data = self.cleaned_data
        terms = []
        if data.get("company"):
            terms.append(Term("company_id", (data["company"].pk,)))
        if data.get("job"):
            terms.append(Term("job_id", (data["job"].pk,)))
        if self.job_ids is not None:
            terms.append(Term("job_id", tuple(self.job_ids)))
        if self.usernames is not None:
            terms.append(Term("username_lower", tuple(self.usernames), lambda name: Lower(Value(name))))
        for name in ("started_by", "outcome", "ips_result"):
            if data.get(name):
                terms.append(Term(name, (data[name],)))
        start, end = self.period(now)
        if start or end:
            terms.append(Term("requested_at", start=start, end=end))
        return terms

    def narrows(self) -> bool:
        """Does a filter with an index of its own apply (job, user, who started it, outcome, IPS result, company)?"""
        data = self.cleaned_data
        return bool(
            data.get("company") or data.get("job") or self.job_ids is not None or self.usernames is not None
            or data.get("started_by") or data.get("outcome") or data.get("ips_result")
        )

    def split(self) -> Split | None:
        """A filter on several jobs or users, for pages read from each one's index
        in order (history.in_order); None for one value or none."""
        if self.job_ids and len(self.job_ids) > 1:
            return Split("job_id", tuple(self.job_ids))
        if self.usernames and len(self.usernames) > 1:
            # The alias of ExecutionQuerySet.by_usernames(), which filter() applied.
            return Split("username_lower", tuple(self.usernames), lambda name: Lower(Value(name)))
        return None

    def params(self) -> dict[str, str]:
        """The filters in effect, as the page's address carries them (empty ones left out)."""
        data = self.cleaned_data
        out = {}
        for name in self.PARAMS:
            value = data.get(name)
            if name in ("from", "to"):
                value = self.data.get(name, "").strip() if value else ""
            elif name == "company":
                value = value.pk if value else ""
            elif name == "job":
                value = value.pk if value else ""
            elif name == "user" and data.get("who") == "mine":
                value = ""
            elif name == "sort" and value == DEFAULT_SORT.key:
                value = ""
            if value not in ("", None):
                out[name] = str(value)
        return out


class ProfileForm(forms.Form):
    time_zone = forms.ChoiceField(
        label=_("Show times in"),
        required=False,
        choices=zone_choices,
        help_text=_("Your browser's zone unless you choose one."),
    )


# --- notifications (issue 19: the settings page) -------------------------------------------------


class NotificationLanguageForm(forms.Form):
    language = forms.ChoiceField(
        label=_("Write my notifications in"),
        required=False,
        help_text=_("Empty: the dashboard's default language."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [("", _("Default"))] + list(settings.LANGUAGES)


class SubscriptionForm(forms.Form):
    """A new subscription. ``scope`` is "mine", "company:<pk>" or "job:<pk>", among the companies
    (and their jobs) whose job logs the user may read: the view passes them in."""

    scope = forms.ChoiceField(label=_("About"))
    results = forms.MultipleChoiceField(
        label=_("Tell me of"), widget=forms.CheckboxSelectMultiple,
        error_messages={"required": _("Choose at least one kind of result.")},
    )
    channel = forms.ChoiceField(label=_("By"))
    url = forms.URLField(
        label=_("Webhook address"), required=False, max_length=2000, assume_scheme="https",
        help_text=_("For a webhook, Slack or Teams: the https address to post to. It is stored encrypted and "
                    "never shown again."),
    )

    def __init__(self, *args, companies, **kwargs):
        super().__init__(*args, **kwargs)
        self.companies = {c.pk: c for c in companies}
        self.jobs = {
            j.pk: j for j in Job.objects.filter(company__in=self.companies, gone_at__isnull=True)
            .select_related("company").order_by("company__name", "name")
        } if self.companies else {}
        choices = [("mine", _("My presses"))]
        if self.companies:
            choices.append((_("Companies"), [(f"company:{pk}", str(c)) for pk, c in self.companies.items()]))
        if self.jobs:
            choices.append((_("Jobs"), [(f"job:{pk}", f"{j.name} ({j.company})") for pk, j in self.jobs.items()]))
        self.fields["scope"].choices = choices
        self.fields["results"].choices = list(Subscription.RESULTS.items())
        self.fields["channel"].choices = Subscription.Channel.choices

    def clean_scope(self):
        value = self.cleaned_data["scope"]
        if value == "mine":
            return ("mine", None, None)
        kind, _sep, pk = value.partition(":")
        try:
            pk = int(pk)
        except ValueError:
            raise forms.ValidationError(_("Choose one of the list.")) from None
        if kind == "company" and pk in self.companies:
            return ("company", self.companies[pk], None)
        if kind == "job" and pk in self.jobs:
            return ("job", None, self.jobs[pk])
        raise forms.ValidationError(_("Choose one of the list."))

    def clean_url(self):
        url = self.cleaned_data["url"]
        if url and not url.lower().startswith(("https://", "http://")):
            raise forms.ValidationError(_("Only http and https addresses can be used."))
        return url

    def clean(self):
        data = super().clean()
        if data.get("channel") in Subscription.URL_CHANNELS and not data.get("url"):
            self.add_error("url", _("A webhook, Slack or Teams subscription needs an address."))
        if data.get("channel") == Subscription.Channel.EMAIL:
            data["url"] = ""
        return data
