import gc
import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from project.chunked_bodies import read_in_chunks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

try:
    application = read_in_chunks(get_wsgi_application())
except ImproperlyConfigured as error:
    # In a line, as the other processes say it (project/settings.py): gunicorn prints an
    # AppImportError's words alone and stops, where it logged the traceback of anything else.
    from gunicorn.errors import AppImportError

    raise AppImportError(f"importbeat not started: {error}") from None

# Every view, serializer and admin is imported now (the URLconf imports them), not by the first
# request, and what start-up made is kept out of the garbage collector's sight: a full
# collection walked those 120,000 objects in 60 ms, a pause that fell on whichever request was
# running (issue 15, the reads' p95). A request's own objects are collected as before.
get_resolver().url_patterns  # noqa: B018
gc.freeze()
