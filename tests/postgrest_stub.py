"""A small stand-in for PostgREST's ``POST /rest/v1/rpc/<fn>`` (no PostgREST
binary can be installed here), faithful to what PostgREST does per request:

- the JWT from ``Authorization: Bearer`` (HS256, verified with the secret;
  none: the anon role, empty claims) gives the role and the claims;
- the body's keys must name parameters of ``public.<fn>`` and cover the ones
  without a default, else 404 PGRST202;
- one READ COMMITTED transaction (READ ONLY unless the function is
  VOLATILE): ``set local role``, ``set_config('request.jwt.claims', …, true)``,
  then the function called with named arguments read from the body with
  ``json_to_record`` and the parameters' declared types (so JSON null is
  SQL NULL, not the parameter's default);
- a single composite comes back as one JSON object, a SETOF as an array,
  rendered by PostgreSQL's ``json_agg``; commit on success, rollback on error;
- an error comes back as ``{code, message, details, hint}`` with PostgREST's
  HTTP status (its ``pgErrorStatus`` table; 42501 is 401 for the anon role).

``call_rpc`` is the per-request database work alone, for tests that talk
SQL; ``PostgrestStub`` serves it over HTTP from a background thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

JWT_SECRET = b"sessionlog-test-jwt-secret-of-at-least-32-bytes"
ANON_ROLE = "anon"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, Any], secret: bytes = JWT_SECRET) -> str:
    """An HS256 JWT, as Supabase issues them: ``sign_jwt({"role": "anon"})``."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def verify_jwt(token: str, secret: bytes = JWT_SECRET) -> dict[str, Any]:
    """The claims of a valid HS256 token; ValueError otherwise."""
    head, body, mac = token.split(".")
    expected = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(_b64(expected), mac):
        raise ValueError("JWSError JWSInvalidSignature")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if "exp" in claims and claims["exp"] < time.time():
        raise ValueError("JWT expired")
    return claims


def http_status(code: str, authed: bool) -> int:
    """PostgREST's SQLSTATE -> HTTP status (src/PostgREST/Error: pgErrorStatus)."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "21000": 500, "53400": 500,
             "57P01": 503, "P0001": 400, "42883": 404, "42P01": 404, "42P17": 500,
             "42501": 403 if authed else 401}
    prefix = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
              "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500,
              "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    if code in exact:
        return exact[code]
    if code.startswith("PT") and code[2:].isdigit():
        return int(code[2:])
    return prefix.get(code[:2], 400)


class RpcError(Exception):
    """An error of PostgREST itself (PGRSTxxx), with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, {"code": code, "message": message,
                                          "details": details, "hint": hint}


# Each candidate's input parameters (name, type) in order, as PostgREST's
# schema cache has them; OUT and TABLE columns are not parameters.
_FUNCTIONS = """
select p.proretset, p.provolatile, p.pronargs - p.pronargdefaults,
       array(select a.name from unnest(p.proargnames, p.proargmodes) a (name, mode)
             where coalesce(a.mode, 'i') in ('i', 'b', 'v')),
       array(select pg_catalog.format_type(t, null) from unnest(p.proargtypes::oid[]) t)
from pg_catalog.pg_proc p
where p.pronamespace = 'public'::regnamespace and p.proname = %s
"""


def call_rpc(conn: psycopg.Connection[Any], fn: str, body: dict[str, Any], *,
             role: str | None, claims: dict[str, Any] | None) -> Any:
    """What PostgREST runs for ``POST /rpc/<fn>`` with this JSON body, on an
    autocommit connection of the authenticator (here: the database owner).
    Returns the decoded JSON response; raises psycopg.Error or RpcError.
    ``role=None, claims=None`` calls as the connection's current role, with
    no request settings (a trusted backend's plain call)."""
    keys = sorted(body)
    found = [f for f in conn.execute(_FUNCTIONS, [fn]).fetchall()
             if set(keys) <= set(f[3]) and set(f[3][:f[2]]) <= set(keys)]
    if len(found) != 1:
        signature = f"public.{fn}({', '.join(keys)})"
        if found:
            raise RpcError(300, "PGRST203", f"Could not choose the best candidate function "
                           f"between: {signature}")
        raise RpcError(404, "PGRST202", f"Could not find the function {signature} in the "
                       "schema cache", f"Searched for the function public.{fn} with parameters "
                       f"{', '.join(keys)}, but no matches were found in the schema cache.")
    retset, volatility, _, names, types = found[0]
    type_of = dict(zip(names, types))
    fn_ident = sql.Identifier("public", fn)
    if keys:
        cols = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
        defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(type_of[k]))
                                  for k in keys)
        args = sql.SQL(", ").join(sql.SQL("{} := pgrst_body.{}").format(sql.Identifier(k),
                                                                         sql.Identifier(k))
                                  for k in keys)
        source = sql.SQL(
            "select pgrst_call.* from (select %s::json as json_data) pgrst_payload, "
            "lateral (select {cols} from json_to_record(pgrst_payload.json_data) as _({defs}) "
            "limit 1) pgrst_body, lateral {fn}({args}) pgrst_call"
        ).format(cols=cols, defs=defs, fn=fn_ident, args=args)
    else:
        source = sql.SQL("select pgrst_call.* from {fn}() pgrst_call, "
                         "(select %s::json) pgrst_payload").format(fn=fn_ident)
    render = ("coalesce(json_agg(_postgrest_t), '[]')" if retset
              else "coalesce(json_agg(_postgrest_t)->0, 'null')")
    query = sql.SQL("with pgrst_source as ({source}) select {render}::text "
                    "from pgrst_source _postgrest_t").format(source=source, render=sql.SQL(render))
    with conn.transaction():
        conn.execute("set transaction isolation level read committed, "
                     + ("read write" if volatility == "v" else "read only"))
        if role is not None:
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        if claims is not None:
            conn.execute("select set_config('search_path', '\"public\"', true), "
                         "set_config('request.jwt.claims', %s, true), "
                         "set_config('request.method', 'POST', true), "
                         "set_config('request.path', %s, true)",
                         [json.dumps(claims), f"/rpc/{fn}"])
        text = conn.execute(query, [json.dumps(body)]).fetchone()[0]
    return json.loads(text)


class PostgrestStub:
    """``with PostgrestStub(dsn) as api: create_client(api.url, ANON_KEY)``"""

    def __init__(self, dsn: str, secret: bytes = JWT_SECRET) -> None:
        self.secret = secret
        self.pool = ConnectionPool(dsn, min_size=1, max_size=8, open=False,
                                   kwargs={"autocommit": True})
        # One request per connection (Connection: close) and non-daemon
        # handler threads, so that server_close() joins every one of them.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,))

    def __enter__(self) -> PostgrestStub:
        self.pool.open(wait=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.pool.close()

    def respond(self, path: str, authorization: str, raw: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON payload) of one ``POST``."""
        role, claims = ANON_ROLE, {}
        try:
            if authorization.startswith("Bearer "):
                try:
                    claims = verify_jwt(authorization[len("Bearer "):], self.secret)
                except ValueError as exc:
                    raise RpcError(401, "PGRST301", str(exc)) from exc
                role = claims.get("role", ANON_ROLE)
            fn = path.removeprefix("/rest/v1/rpc/")
            if fn == path:
                raise RpcError(404, "PGRST125", f"Invalid path specified in request URL: {path}")
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                raise RpcError(400, "PGRST102", f"Invalid body: {exc}") from exc
            if not isinstance(body, dict):
                raise RpcError(400, "PGRST102", "Invalid body: expected a JSON object")
            with self.pool.connection() as conn:
                return 200, call_rpc(conn, fn, body, role=role, claims=claims)
        except RpcError as exc:
            return exc.status, exc.body
        except psycopg.Error as exc:
            code = exc.diag.sqlstate or "PGRSTX00"
            return http_status(code, authed=role != ANON_ROLE), {
                "code": code, "message": exc.diag.message_primary or str(exc),
                "details": exc.diag.message_detail, "hint": exc.diag.message_hint}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = stub.respond(self.path.split("?")[0],
                                               self.headers.get("Authorization", ""), raw)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                if status == 401:
                    self.send_header("WWW-Authenticate", "Bearer")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet

        return Handler
