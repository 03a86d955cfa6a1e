"""The user's own settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from ..forms import ProfileForm
from ..models import Profile
from ..services import people


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request):
    """The user's own settings: the time zone every page shows times in."""
    chosen = Profile.objects.filter(user=request.user).values_list("time_zone", flat=True).first() or ""
    form = ProfileForm(request.POST or None, initial={"time_zone": chosen})
    if request.method == "POST" and form.is_valid():
        people.set_time_zone(request.user, form.cleaned_data["time_zone"])
        zone = form.cleaned_data["time_zone"]
        if zone:
            text = gettext("Times are now shown in %(zone)s.") % {"zone": zone}
        else:
            text = gettext("Times are now shown in your browser's zone.")
        messages.success(request, text)
        return redirect("jobs:preferences")
    return render(request, "jobs/preferences.html", {"form": form})
