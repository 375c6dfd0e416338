"""The Jinja2 environment of every page the server renders itself (``templates/``).

The patient's agreement page and the staff's follow-up page share it, and with it
the rules that keep them safe: autoescaping, and StrictUndefined so that a name
missing from a view fails the render instead of printing nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("samplan", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_error(title: str, message: str, *, back: tuple[str, str] | None = None) -> str:
    """A plain page saying what went wrong: with ``back`` (href, words) a link back to
    where the reader came from, else where to call for help (the patient's pages)."""
    return render("error.html", title=title, message=message, back=back)
