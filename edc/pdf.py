"""HTML -> PDF with WeasyPrint, for every printable output (casebooks, DSMB reports, blank and
annotated CRFs). A page's stylesheets and fonts are read from the static files (STATIC_URL paths
through the staticfiles finders), never fetched over the network: a PDF renders the same on a
server without outside access, and a rendered page cannot make the server fetch a URL."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.contrib.staticfiles import finders

STATIC_DIR = Path(settings.BASE_DIR) / "static"


def _static_only(url: str) -> dict:
    """WeasyPrint's url_fetcher: a static file (by its /static/… URL or its file path under
    static/), else refused."""
    parsed = urlparse(url)
    path = unquote(parsed.path)
    found = None
    if path.startswith(settings.STATIC_URL):
        found = finders.find(path[len(settings.STATIC_URL):])
    elif parsed.scheme == "file":
        candidate = Path(path).resolve()
        if candidate.is_relative_to(STATIC_DIR.resolve()) and candidate.is_file():
            found = str(candidate)
    if not found:
        raise ValueError(f"not a static file: {url}")
    return {"file_obj": open(found, "rb"), "mime_type": mimetypes.guess_type(found)[0], "redirected_url": url}  # noqa: SIM115 - WeasyPrint closes it


def html_to_pdf(html: str) -> bytes:
    """The HTML as PDF (print media). Relative URLs resolve against static/."""
    from weasyprint import HTML  # imported when used: it loads Pango/cairo libraries

    return HTML(string=html, base_url=STATIC_DIR.as_uri() + "/", url_fetcher=_static_only).write_pdf()
