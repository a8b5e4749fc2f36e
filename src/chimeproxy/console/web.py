"""The console's endpoints under /console/: sign-in, the pages, the actions, the live feed and
the static files. The application's endpoint table routes here (access rule `Access.CONSOLE`:
loopback only in open mode); who the viewer is comes from the signed session cookie, checked
here against the store, and every POST must carry the session's CSRF token."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from sqlalchemy import Connection

from chimeproxy.console import actions, cookies, masking, pages
from chimeproxy.console.pages import NotFound, Viewer
from chimeproxy.protocol.auth import Authenticator, is_loopback
from chimeproxy.protocol.endpoints import Access, Endpoint
from chimeproxy.protocol.http import Request, Response
from chimeproxy.protocol.serializer import format_timestamp
from chimeproxy.services import Services
from chimeproxy.store import console as store

log = logging.getLogger("chimeproxy.console")

HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
HTML = (b"content-type", b"text/html; charset=utf-8")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Not no-referrer: with it, browsers send `Origin: null` on the console's own forms.
    (b"referrer-policy", b"same-origin"),
]
KEY_SETTING = "console_key"

Page = Callable[[Viewer, Request, dict[str, str], Connection], Response]


def wall_ms() -> int:
    """Sign-ins last by the real clock, never the --clock-control one."""
    return int(time.time() * 1000)


class Console:
    def __init__(self, services: Services, authenticator: Authenticator) -> None:
        self.services = services
        self.settings = services.settings
        self.open_mode = authenticator.mode == "open"
        self.credentials = authenticator.credentials
        self.throttle = cookies.SignInThrottle()
        self._key: bytes | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["span"] = _span
        self.templates.filters["seconds"] = _seconds
        self.static = {
            path.name: path.read_bytes() for path in (HERE / "static").iterdir() if path.is_file()
        }

    def endpoints(self) -> list[tuple[str, str, Endpoint]]:
        """(method, path template, endpoint) of each console endpoint."""
        session = "/console/sessions/{connectorId}/{sessionId}"
        overview = self._view("overview.html", "Overview", pages.overview)
        sessions = self._view("sessions.html", "Sessions", pages.session_list)
        find = self._view("find.html", "Find a number", pages.find)
        numbers = self._view("numbers.html", "Numbers", pages.numbers)
        live = self._view("live.html", "Live", pages.live)
        pages_: list[tuple[str, str, str, Any]] = [
            ("GET", "/console", "ConsoleRedirect", self._redirect_root),
            ("GET", "/console/", "ConsoleOverview", self._page(overview)),
            ("GET", "/console/sessions", "ConsoleSessions", self._page(sessions)),
            ("GET", session, "ConsoleSession", self._page(self._session)),
            ("GET", session + "/close", "ConsoleConfirmClose", self._page(self._session)),
            ("POST", session + "/close", "ConsoleClose", self._page(self._close)),
            ("GET", session + "/delete", "ConsoleConfirmDelete", self._page(self._session)),
            ("POST", session + "/delete", "ConsoleDelete", self._page(self._delete)),
            ("GET", "/console/find", "ConsoleFind", self._page(find)),
            ("GET", "/console/numbers", "ConsoleNumbers", self._page(numbers)),
            ("GET", "/console/live", "ConsoleLive", self._page(live)),
            ("GET", "/console/live/feed", "ConsoleLiveFeed", self._page(self._feed, feed=True)),
            ("POST", "/console/scope", "ConsoleScope", self._page(self._scope)),
            ("GET", "/console/signin", "ConsoleSignInForm", self._sign_in_form),
            ("POST", "/console/signin", "ConsoleSignIn", self._sign_in),
            ("POST", "/console/signout", "ConsoleSignOut", self._page(self._sign_out)),
            ("GET", "/console/static/{name}", "ConsoleStatic", self._static_file),
        ]
        return [
            (method, path, Endpoint(name, Access.CONSOLE, handler))
            for method, path, name, handler in pages_
        ]

    async def pool_refused(self, account: str, region: str, connector_id: str) -> None:
        """Record a CreateProxySession refused for an exhausted pool (the overview's chart)."""
        now = self.services.clock.now_ms()

        def work() -> None:
            with self.services.db.write() as connection:
                store.record_pool_refusal(connection, account, region, connector_id, now)

        try:
            await self.services.db.run(work, self.settings.db_deadline)
        except Exception:  # the refusal itself must still reach its caller
            log.warning("could not record a pool-exhaustion refusal", exc_info=True)

    # The path of every page: who is looking, CSRF on POST, one database job, headers.

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = bytes.fromhex(
                self.services.db.setting(KEY_SETTING, lambda: secrets.token_hex(32))
            )
        return self._key

    def _page(self, page: Page, *, feed: bool = False) -> Any:
        async def handle(request: Request, labels: dict[str, str]) -> Response:
            started = time.perf_counter()

            def work() -> Response:
                # One read transaction (one snapshot) for the viewer and the page; actions
                # write in their own.
                with self.services.db.read() as connection:
                    return serve(connection)

            def serve(connection: Connection) -> Response:
                viewer = self._viewer(request, connection)
                if viewer is None:
                    return self._not_signed_in(request, feed)
                if request.method == "POST" and not self._csrf_ok(request, viewer):
                    log.warning(
                        "console action refused: missing or wrong CSRF token",
                        extra={"account": viewer.account, "client": request.client_host},
                    )
                    return self._render(
                        viewer,
                        request,
                        "message.html",
                        connection=connection,
                        status=403,
                        title="Refused",
                        message="This form was stale or did not come from the console. "
                        "Reload the page and try again.",
                    )
                try:
                    response = page(viewer, request, labels, connection)
                except NotFound as exc:
                    response = self._render(
                        viewer,
                        request,
                        "message.html",
                        connection=connection,
                        status=404,
                        title="Not found",
                        message=str(exc),
                    )
                for value in viewer.set_cookies:
                    response.headers.append((b"set-cookie", value.encode()))
                return response

            # In a thread even on SQLite: a page's counts and charts read far more than an API
            # call, and inline they would hold up every request meanwhile.
            response = await self.services.db.run(work, self.settings.db_deadline, background=True)
            return _finish(response, started)

        return handle

    def _viewer(self, request: Request, connection: Connection) -> Viewer | None:
        """The signed-in viewer; in open mode one is signed in at once (the default account)."""
        jar = cookies.read_cookies(request.headers.get("cookie"))
        token = cookies.verified(self.key, jar.get(cookies.COOKIE))
        now = wall_ms()
        row = None
        if token is not None:
            row = store.find_sign_in(connection, cookies.token_hash(token), now)
        set_cookies = []
        if row is None:
            if not self.open_mode:
                return None
            token = cookies.new_token()
            row = self._start(token, self.settings.default_account, None, now)
            set_cookies.append(self._session_cookie(request, token))
        assert token is not None
        query = _query(request)
        return Viewer(
            token_hash=row["token_hash"],
            account=row["account"],
            access_key_id=row["access_key_id"],
            region=row["region"],
            csrf=cookies.csrf_token(self.key, token),
            reveal=query.get("reveal") == "1",
            set_cookies=set_cookies,
        )

    def _start(self, token: str, account: str, key_id: str | None, now: int) -> dict[str, Any]:
        values = {
            "token_hash": cookies.token_hash(token),
            "account": account,
            "access_key_id": key_id,
            "region": None,
        }
        with self.services.db.write() as connection:
            store.create_sign_in(
                connection,
                values["token_hash"],
                account,
                key_id,
                now,
                now + cookies.SESSION_SECONDS * 1000,
            )
        return values

    def _session_cookie(self, request: Request, token: str) -> str:
        return cookies.set_cookie(
            cookies.COOKIE,
            cookies.signed(self.key, token),
            secure=request.scheme == "https",
            max_age=cookies.SESSION_SECONDS,
        )

    def _csrf_ok(self, request: Request, viewer: Viewer) -> bool:
        if not _same_origin(request):
            return False
        given = _form(request).get("csrf")
        return given is not None and secrets.compare_digest(given, viewer.csrf)

    def _not_signed_in(self, request: Request, feed: bool) -> Response:
        if feed:
            return Response.json(401, {"signed_in": False})
        target = request.raw_path if request.method == "GET" else "/console/"
        return _redirect("/console/signin?" + urlencode({"next": target}))

    # Rendering.

    def _render(
        self,
        viewer: Viewer | None,
        request: Request,
        template: str,
        *,
        connection: Connection | None = None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        reveal = bool(viewer and viewer.reveal)
        query = _query(request)
        flipped = {k: v for k, v in query.items() if k != "reveal"}
        if not reveal:
            flipped["reveal"] = "1"
        base: dict[str, Any] = {
            "viewer": viewer,
            "open_mode": self.open_mode,
            "path": request.raw_path,
            "query": query,
            "num": lambda number: masking.shown(number, reveal),
            "reveal_url": request.raw_path + ("?" + urlencode(flipped) if flipped else ""),
            "keep": (lambda **changes: _with(query, changes)),
            "quote": lambda text: quote(text, safe=""),
            "regions": [],
            "accounts": [],
            "nav": "",
        }
        if viewer is not None and connection is not None:
            base |= pages.scope_choices(connection, viewer, self.open_mode)
        body = self.templates.get_template(template).render(base | context)
        response = Response(status, body.encode())
        response.headers.append(HTML)
        return response

    # Pages.

    def _view(self, template: str, title: str, read: pages.Reader) -> Page:
        """A page that shows what `read(connection, services, viewer, query)` gives."""

        def page(
            viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
        ) -> Response:
            data = read(connection, self.services, viewer, _query(request))
            nav = template.removesuffix(".html")
            return self._render(
                viewer, request, template, connection=connection, title=title, nav=nav, **data
            )

        return page

    def _session(
        self, viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
    ) -> Response:
        """A session's page, or (…/close, …/delete) the confirmation of an action on it."""
        data = pages.session_detail(
            connection, self.services, viewer, labels["connectorId"], labels["sessionId"]
        )
        action = request.raw_path.rsplit("/", 1)[1]
        if action in ("close", "delete"):
            return self._render(
                viewer,
                request,
                "confirm.html",
                connection=connection,
                title=f"{action.title()} session",
                nav="sessions",
                action=action,
                **data,
            )
        return self._render(
            viewer,
            request,
            "session.html",
            connection=connection,
            title="Session",
            nav="sessions",
            done=_query(request).get("done"),
            **data,
        )

    def _close(
        self, viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
    ) -> Response:
        closed = actions.close(self.services, viewer, labels["connectorId"], labels["sessionId"])
        log.info(
            "console closed a session" if closed else "console close: session was closed",
            extra=self._who(viewer, request) | {"proxy_session": labels["sessionId"]},
        )
        return _redirect(_session_path(labels) + "?done=" + ("closed" if closed else "unchanged"))

    def _delete(
        self, viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
    ) -> Response:
        actions.delete(self.services, viewer, labels["connectorId"], labels["sessionId"])
        log.info(
            "console deleted a session",
            extra=self._who(viewer, request) | {"proxy_session": labels["sessionId"]},
        )
        return _redirect("/console/sessions?done=deleted")

    def _feed(
        self, viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
    ) -> Response:
        """New interactions for the live view as rendered rows (the page adds unseen ones), and
        the rows it shows in progress that have ended (it puts them in place of the old)."""
        data = pages.live(connection, self.services, viewer, _query(request))
        row = self.templates.get_template("_interaction.html").module.row  # type: ignore[attr-defined]
        reveal = viewer.reveal

        def num(number: str | None) -> str:
            return masking.shown(number, reveal)

        def rendered(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {
                    "id": item["InteractionId"],
                    "ended": item["EndedTimestamp"] is not None,
                    "html": str(row(item, num, True)),
                }
                for item in items
            ]

        return Response.json(
            200,
            {
                "now": data["now"],
                "rows": rendered(data["interactions"]),
                "ended": rendered(data["ended"]),
            },
        )

    def _scope(
        self, viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
    ) -> Response:
        form = _form(request)
        region = form.get("region", "")[:32] or None
        account = viewer.account
        if self.open_mode and (chosen := form.get("account", "")).isdigit() and len(chosen) == 12:
            account = chosen
        with self.services.db.write() as connection:
            store.set_scope(connection, viewer.token_hash, account, region)
        return _redirect(_local(form.get("next")))

    # Sign-in and sign-out.

    async def _sign_in_form(self, request: Request, labels: dict[str, str]) -> Response:
        started = time.perf_counter()

        def work() -> Response:
            if self.open_mode:
                return _redirect(_local(_query(request).get("next")))
            with self.services.db.read() as connection:
                signed_in = self._viewer(request, connection) is not None
            if signed_in:
                return _redirect(_local(_query(request).get("next")))
            return self._sign_in_page(request)

        return _finish(await self.services.db.run(work, self.settings.db_deadline), started)

    def _sign_in_page(
        self, request: Request, *, status: int = 200, error: str | None = None, key_id: str = ""
    ) -> Response:
        nonce = cookies.new_token()
        response = self._render(
            None,
            request,
            "signin.html",
            status=status,
            title="Sign in",
            nav="",
            csrf=cookies.csrf_token(self.key, nonce, "signin"),
            next=_local(_query(request).get("next") or _form(request).get("next")),
            error=error,
            key_id=key_id,
            insecure=request.scheme != "https"
            and not is_loopback(request.client_host or "0.0.0.0"),
        )
        response.headers.append(
            (
                b"set-cookie",
                cookies.set_cookie(
                    cookies.SIGNIN_COOKIE,
                    cookies.signed(self.key, nonce, "signin-cookie"),
                    secure=request.scheme == "https",
                    max_age=cookies.SIGNIN_SECONDS,
                ).encode(),
            )
        )
        return response

    async def _sign_in(self, request: Request, labels: dict[str, str]) -> Response:
        started = time.perf_counter()
        address = request.client_host or "unknown"

        def work() -> Response:
            if self.open_mode:
                return _redirect("/console/")
            form = _form(request)
            key_id = form.get("access_key_id", "").strip()[:128]
            secret = form.get("secret_access_key", "")
            jar = cookies.read_cookies(request.headers.get("cookie"))
            nonce = cookies.verified(self.key, jar.get(cookies.SIGNIN_COOKIE), "signin-cookie")
            if (
                nonce is None
                or not _same_origin(request)
                or not cookies.csrf_ok(self.key, nonce, form.get("csrf"), "signin")
            ):
                return self._sign_in_page(
                    request,
                    status=403,
                    error="The sign-in form expired; try again.",
                    key_id=key_id,
                )
            if self.throttle.blocked(address):
                log.warning(
                    "console sign-in refused: too many failures",
                    extra={"access_key_id": key_id, "client": address},
                )
                return self._sign_in_page(
                    request,
                    status=429,
                    key_id=key_id,
                    error="Too many failed sign-ins from this address; wait a few minutes.",
                )
            known = self.credentials.get(key_id)
            valid = known is not None and secrets.compare_digest(
                secret.encode(), known.secret_access_key.encode()
            )
            if not valid or known is None:
                self.throttle.failed(address)
                log.warning(
                    "console sign-in failed",
                    extra={"outcome": "failure", "access_key_id": key_id, "client": address},
                )
                return self._sign_in_page(
                    request,
                    status=401,
                    key_id=key_id,
                    error="That access key id and secret access key do not match.",
                )
            self.throttle.succeeded(address)
            token = cookies.new_token()
            self._start(token, known.account_id, key_id, wall_ms())
            log.info(
                "console sign-in",
                extra={
                    "outcome": "success",
                    "access_key_id": key_id,
                    "account": known.account_id,
                    "client": address,
                },
            )
            response = _redirect(_local(form.get("next")))
            response.headers.append((b"set-cookie", self._session_cookie(request, token).encode()))
            response.headers.append(
                (
                    b"set-cookie",
                    cookies.clear_cookie(
                        cookies.SIGNIN_COOKIE, secure=request.scheme == "https"
                    ).encode(),
                )
            )
            return response

        return _finish(await self.services.db.run(work, self.settings.db_deadline), started)

    def _sign_out(
        self, viewer: Viewer, request: Request, labels: dict[str, str], connection: Connection
    ) -> Response:
        with self.services.db.write() as connection:
            store.end_sign_in(connection, viewer.token_hash)
        log.info("console sign-out", extra=self._who(viewer, request))
        response = _redirect("/console/signin" if not self.open_mode else "/console/")
        response.headers.append(
            (
                b"set-cookie",
                cookies.clear_cookie(cookies.COOKIE, secure=request.scheme == "https").encode(),
            )
        )
        return response

    def _who(self, viewer: Viewer, request: Request) -> dict[str, Any]:
        return {
            "account": viewer.account,
            "access_key_id": viewer.access_key_id,
            "client": request.client_host,
        }

    # Fixed answers.

    async def _redirect_root(self, request: Request, labels: dict[str, str]) -> Response:
        return _redirect("/console/")

    async def _static_file(self, request: Request, labels: dict[str, str]) -> Response:
        name = labels["name"]
        body = self.static.get(name)
        if body is None:
            return Response(404, b"not found", [(b"content-type", b"text/plain")])
        response = Response(200, body)
        response.headers.append(
            (b"content-type", STATIC_TYPES.get(Path(name).suffix, "text/plain").encode())
        )
        response.headers.append((b"cache-control", b"public, max-age=3600"))
        response.headers.extend(SECURITY_HEADERS)
        return response


# Helpers.


def _finish(response: Response, started: float) -> Response:
    """Security headers, no caching (pages hold phone numbers), and the time it took."""
    response.headers.extend(SECURITY_HEADERS)
    response.headers.append((b"cache-control", b"no-store"))
    took = (time.perf_counter() - started) * 1000
    response.headers.append((b"server-timing", f"console;dur={took:.1f}".encode()))
    return response


def _redirect(location: str) -> Response:
    return Response(303, b"", [(b"location", location.encode())])


def _local(target: str | None) -> str:
    """A redirect target inside the console only (never another site: `//evil` included)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return "/console/"


def _query(request: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.query_string, keep_blank_values=True).items()}


def _form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        return {}
    text = request.body.decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _with(query: dict[str, str], changes: dict[str, Any]) -> str:
    """The query string with `changes` (None removes a key)."""
    merged = {**query, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def _same_origin(request: Request) -> bool:
    """A browser's Origin (when it sends one) must be this server's own, and its Fetch
    Metadata (when it sends them) must say the request came from the same origin."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return origin.split("://", 1)[-1] in hosts


def _session_path(labels: dict[str, str]) -> str:
    return (
        f"/console/sessions/{quote(labels['connectorId'], safe='')}/"
        f"{quote(labels['sessionId'], safe='')}"
    )


def _when(ms: int | None) -> str:
    """`2026-11-27 14:03:12 UTC`"""
    if ms is None:
        return ""
    return format_timestamp(ms)[:19].replace("T", " ") + " UTC"


def _span(ms: int | None) -> str:
    """A length of time for people: `2 h 05 min`, `45 s`."""
    if ms is None:
        return ""
    seconds = max(0, int(ms // 1000))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min {seconds % 60:02d} s"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _seconds(value: float | None) -> str:
    return "" if value is None else _span(int(value * 1000))
