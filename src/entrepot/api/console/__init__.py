"""The operator's console at `/ui`: server-rendered pages for the people who decide, served by
the gateway itself and usable air-gapped (nothing is loaded from outside the gateway; the
Content-Security-Policy header makes browsers refuse it anyway).

Who may see it: the holder of the admin key, exactly as for the admin API (`api/admin.py`).
Without an admin key configured the console is disabled. Logging in posts the admin key once
and yields a session cookie (`session.py`); every change is a POST form carrying the session's
CSRF token, checked before any page sees the form. No page reads a key from its URL.

How to add a page:

1. Write a module in this package with an `async def get(ctx: PageContext) -> Response` (and,
   for changes, an `async def post(ctx: PageContext, form: FormData) -> Response`), rendering
   a template with `ctx.render("yours.html", **data)`; the template starts with
   `{% extends "base.html" %}` and fills `{% block content %}`. Forms include
   `{{ csrf_field() }}`; the CSRF check is already done when `post` runs.
2. Define `PAGE = Page(path="/yours", title="Your title", get=get, post=post)` in it.
3. Add `yours.PAGE` to `PAGES` in `routes.py`, in navigation order. The navigation lists the
   registered pages only.

Numbers go through the filters of `figures.py` (every figure with its unit: `money`, `count`,
`tokens`, `latency`, `percent`, `when`); charts are inline SVG from `charts.py`. Templates may use
neither inline `<script>` nor `style=` attributes (the CSP forbids both): style with classes
from `static/console.css`, draw with the SVG presentation attributes `charts.py` uses.
"""
