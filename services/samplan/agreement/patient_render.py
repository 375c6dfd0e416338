"""The patient's view as a page (HTML) and as paper (an A4 PDF), from the same templates.

Templates are in ``samplan/templates/`` (Jinja2, autoescaped): ``agreement.html``
is the page, ``agreement_pdf.html`` the printout, both built from the parts in
``_parts.html``, so the page and the paper say the same words. The CSS is
inlined (``portal.css``, with a print stylesheet; ``pdf.css`` for A4), so a page
stands alone: no JavaScript, no other request.

PDF: WeasyPrint (HTML + CSS to PDF, the print CSS the page already has; the
same template parts, so the paper cannot drift from the page). It needs Pango
from the system (Debian: ``libpango-1.0-0``, ``libpangoft2-1.0-0``,
``libharfbuzz-subset0``; fonts ``fonts-dejavu-core``); it is imported only when
a PDF is asked for, so the page works without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from samplan import html_pages
from samplan.agreement.patient_view import PatientView

__all__ = ["PortalForms", "render_error", "render_html", "render_pdf"]


@dataclass(frozen=True, slots=True)
class PortalForms:
    """The co-creation forms of the portal page: where they post, and what to say after."""

    base: str
    """``/portal/patient/{id}``: forms post to ``{base}/goal``, ``/activity``, ..."""
    notice: str | None = None
    notice_at: str = "innehall"
    """The id of the part the notice is shown in (where the saved thing is)."""
    problem: str | None = None


def render_html(
    view: PatientView, *, portal: PortalForms | None = None, pdf_href: str | None = None
) -> str:
    """The page: the agreement in plain Swedish, with the portal's forms when ``portal``."""
    return html_pages.render("agreement.html", view=view, portal=portal, pdf_href=pdf_href)


def render_error(title: str, message: str) -> str:
    """A plain page saying what went wrong (the portal's 404 and 403)."""
    return html_pages.render_error(title, message)


def render_pdf(view: PatientView) -> bytes:
    """The A4 printout: name, personnummer, date printed, validity and contacts on page one."""
    import weasyprint

    html = html_pages.render("agreement_pdf.html", view=view)
    document = weasyprint.HTML(string=html, base_url=None)
    pdf: bytes = document.write_pdf(pdf_variant="pdf/ua-1")
    return pdf
