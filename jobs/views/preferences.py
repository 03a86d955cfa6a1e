"""The user's own settings: the time zone, and notifications (their language, the user's subscriptions)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from ..forms import NotificationLanguageForm, ProfileForm, SubscriptionForm
from ..models import Profile, Subscription
from ..services import exports, notify, people


def _get_subscription_for_user(request, pk) -> Subscription:
    """One of the user's own subscriptions: anyone else's is not found (404)."""
    if not str(pk).isdigit():
        raise Http404
    return get_object_or_404(Subscription, pk=int(pk), user=request.user)


def _subscription_form(request, data=None) -> SubscriptionForm:
    return SubscriptionForm(data, companies=exports.readable_companies(request.user), prefix="sub")


#: The session key that holds a new webhook secret until the page shows it, once.
NEW_SECRET = "jobs.new_webhook_secret"


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request):
    """The user's own settings: the time zone every page shows times in, and their notifications."""
    profile = Profile.objects.filter(user=request.user).values("time_zone", "language").first() or {}
    form = ProfileForm(None, initial={"time_zone": profile.get("time_zone", "")})
    language_form = NotificationLanguageForm(None, initial={"language": profile.get("language", "")})
    subscription_form = _subscription_form(request)
    secret = ""
    do = request.POST.get("do", "time_zone") if request.method == "POST" else ""

    if do == "time_zone":
        form = ProfileForm(request.POST)
        if form.is_valid():
            people.set_time_zone(request.user, form.cleaned_data["time_zone"])
            zone = form.cleaned_data["time_zone"]
            if zone:
                text = gettext("Times are now shown in %(zone)s.") % {"zone": zone}
            else:
                text = gettext("Times are now shown in your browser's zone.")
            messages.success(request, text)
            return redirect("jobs:preferences")
    elif do == "language":
        language_form = NotificationLanguageForm(request.POST)
        if language_form.is_valid():
            notify.set_language(request.user, language_form.cleaned_data["language"])
            messages.success(request, gettext("Your notifications' language is saved."))
            return redirect("jobs:preferences")
    elif do == "add":
        subscription_form = _subscription_form(request, request.POST)
        if subscription_form.is_valid():
            data = subscription_form.cleaned_data
            scope, company, job = data["scope"]
            _subscription, secret = notify.add_subscription(
                request.user, scope=scope, company=company, job=job, channel=data["channel"], url=data["url"],
                results={field: field in data["results"] for field in Subscription.RESULTS},
            )
            messages.success(request, gettext("Subscription added."))
            if secret:
                # Shown once, by the page this redirects to (a reload adds nothing): kept server-side in
                # the session until then, never in a message or a cookie.
                request.session[NEW_SECRET] = secret
            return redirect("jobs:preferences")
    elif do in ("pause", "resume", "remove"):
        subscription = _get_subscription_for_user(request, request.POST.get("subscription") or 0)
        if do == "remove":
            subscription.delete()
            messages.success(request, gettext("Subscription removed."))
        else:
            subscription.paused = do == "pause"
            subscription.save(update_fields=["paused"])
            messages.success(request, gettext("Subscription paused.") if subscription.paused
                             else gettext("Subscription resumed."))
        return redirect("jobs:preferences")

    if request.method == "GET":
        secret = request.session.pop(NEW_SECRET, "")
    subscriptions = [
        (s, notify.subscription_works(s))
        for s in Subscription.objects.filter(user=request.user).select_related("company", "job__company")
    ]
    response = render(request, "jobs/preferences.html", {
        "form": form,
        "language_form": language_form,
        "subscription_form": subscription_form,
        "subscriptions": subscriptions,
        "secret": secret,
    })
    if secret:
        add_never_cache_headers(response)  # no copy of the secret in any cache, the browser's included
    return response
