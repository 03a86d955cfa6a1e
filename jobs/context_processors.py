from .responses import htmx_config


def htmx(request):
    """base.html's htmx-config, from the one table of answer statuses (jobs/responses.py)."""
    return {"htmx_config": htmx_config()}
