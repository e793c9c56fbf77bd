"""HTML -> PDF for the close-out and oversight outputs (participant casebooks, DSMB reports), with
WeasyPrint (a maintained HTML/CSS renderer: no browser, print CSS with page counters and running
headers).

The fonts are the DejaVu files vendored under static/vendor/dejavu (their licence beside them),
loaded by @font-face from the static folder, so a PDF looks the same on every server whatever
fonts the system has. A blinded output passes its whole rendered HTML through the export's arm
mask (`trials.exports.selectors.arm_mask`) before rendering: no arm code or label can reach the
PDF from any value, free text or audit line (the templates name no arm themselves).
"""

from __future__ import annotations

from collections.abc import Callable

from django.template.loader import render_to_string

from edc.pdf import html_to_pdf


def render_pdf(template: str, context: dict, *, mask: Callable[[str], str] | None = None) -> bytes:
    """The template rendered to PDF; `mask` (a blinded output) is applied to the whole HTML first."""
    html = render_to_string(template, context)
    if mask is not None:
        html = mask(html)
    return html_to_pdf(html)
