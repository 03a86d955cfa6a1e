"""The product's URLs and /_bench/noop (bench/floor_settings.py says why)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.http import require_POST

from ipsadmin.urls import urlpatterns as _product


@require_POST
@login_required
def noop(request):
    return HttpResponse(b"", content_type="text/html; charset=utf-8")


urlpatterns = [path("_bench/noop", noop), *_product]
