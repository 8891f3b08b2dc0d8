from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest

DEMO_FILES = {"products.csv"}


def demo_file(request: HttpRequest, name: str) -> FileResponse:
    """Serve the bundled sample CSV that the demo import fetches."""
    if name not in DEMO_FILES:
        raise Http404(name)
    return FileResponse(open(settings.BASE_DIR / "demo" / name, "rb"), content_type="text/csv")
