"""The operator console under /console/ (docs/console.md): pools, sessions, interactions and
numbers of the signed-in account in a browser, served by the same process as the API.

- `web.py`: the endpoints, sign-in and sign-out, CSRF, rendering and headers;
- `pages.py`: what each page shows, read from the store (store/console.py);
- `actions.py`: closing and deleting a session, with the API's semantics and events;
- `cookies.py`, `masking.py`, `charts.py`: pure helpers (cookie signing, CSRF tokens, the
  sign-in throttle; partly masked numbers; the hourly chart);
- `templates/`, `static/`: Jinja2 templates (autoescaped), one stylesheet, one script.

Only app.py imports this package.
"""
