"""A small stand-in for PostgREST's ``/rest/v1/rpc/<fn>`` (no PostgREST
binary can be installed here), faithful to what PostgREST does per request
(its source, src/library/PostgREST, is the reference):

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
  HTTP status (its ``pgErrorStatus`` table; 42501 is 401 for the anon role);
- ``GET`` and ``HEAD`` take the arguments from the query string (a value
  without an operator is an argument, ApiRequest/QueryParams.hs) and always
  run READ ONLY (Plan.hs: ``InvRead`` is ``SQL.Read``), so a writer fails
  with 25006 -> 405; ``HEAD`` sends the headers without the body;
- the function's rows can be shaped like a table's: ``select=a,b``, filters
  ``col=op.value`` (eq, neq, gt, gte, lt, lte, like, ilike, is, in),
  ``order=col.desc``, ``limit``, ``offset``;
- every response carries ``Content-Range: <first>-<last>/<total>``, total
  ``*`` unless ``Prefer: count=exact`` (RangeQuery.hs: ``contentRangeH``);
- ``Accept: application/vnd.pgrst.object+json`` (supabase ``.single()``) on
  anything but one row is 406 PGRST116 "Cannot coerce the result to a single
  JSON object".

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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

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


# PostgREST's filter operators (ApiRequest/QueryParams.hs: operators) that
# the stand-in supports, as SQL.
_OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
              "like": "like", "ilike": "ilike"}
OBJECT_MEDIA = "application/vnd.pgrst.object+json"


@dataclass
class Shape:
    """What the query string asks of the function's rows."""

    select: list[str] | None = None  # None: every column
    filters: list[tuple[str, str, str]] = field(default_factory=list)  # (column, op, value)
    order: list[tuple[str, bool, str | None]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0

    @classmethod
    def parse(cls, query: list[tuple[str, str]], read: bool) -> tuple[Shape, dict[str, str]]:
        """The shape and, for GET/HEAD, the arguments (values without an
        operator). Raises RpcError(400, PGRST100) like PostgREST."""
        shape, args = cls(), {}
        for key, value in query:
            if key == "select":
                shape.select = None if value.strip() == "*" else \
                    [c.strip() for c in value.split(",") if c.strip()]
            elif key == "limit":
                shape.limit = _nonneg(key, value)
            elif key == "offset":
                shape.offset = _nonneg(key, value)
            elif key == "order":
                for term in value.split(","):
                    parts = term.strip().split(".")
                    desc = len(parts) > 1 and parts[1] == "desc"
                    nulls = next((p for p in parts[1:] if p.startswith("nulls")), None)
                    shape.order.append((parts[0], desc, nulls))
            elif key in ("columns", "on_conflict"):
                continue
            else:
                op, _, operand = value.partition(".")
                if op in _OPERATORS or op in ("is", "in"):
                    shape.filters.append((key, op, operand))
                elif read:
                    args[key] = value
                else:
                    raise RpcError(400, "PGRST100", f'"failed to parse filter ({value})"',
                                   "unexpected \"" + value[:1] + "\" expecting operator")
        return shape, args

    def where(self) -> tuple[sql.Composable, list[Any]]:
        terms: list[sql.Composable] = []
        values: list[Any] = []
        for column, op, operand in self.filters:
            col = sql.Identifier(column)
            if op == "is":
                word = {"null": "null", "true": "true", "false": "false",
                        "unknown": "unknown"}.get(operand.lower())
                if word is None:
                    raise RpcError(400, "PGRST100", f'"failed to parse filter (is.{operand})"')
                terms.append(sql.SQL("{} is {}").format(col, sql.SQL(word)))
            elif op == "in":
                items = [i.strip().strip('"') for i in operand.strip("()").split(",")]
                terms.append(sql.SQL("{} = any({})").format(col, sql.Placeholder()))
                values.append(items)
            else:
                terms.append(sql.SQL("{} {} {}").format(col, sql.SQL(_OPERATORS[op]),
                                                        sql.Placeholder()))
                values.append(operand)
        if not terms:
            return sql.SQL(""), values
        return sql.SQL(" where ") + sql.SQL(" and ").join(terms), values

    def tail(self) -> sql.Composable:
        parts: list[sql.Composable] = []
        if self.order:
            parts.append(sql.SQL(" order by ") + sql.SQL(", ").join(
                sql.SQL("{} {}{}").format(
                    sql.Identifier(c), sql.SQL("desc" if d else "asc"),
                    sql.SQL({"nullsfirst": " nulls first", "nullslast": " nulls last"}.get(
                        n or "", "")))
                for c, d, n in self.order))
        if self.limit is not None:
            parts.append(sql.SQL(" limit {}").format(sql.Literal(self.limit)))
        if self.offset:
            parts.append(sql.SQL(" offset {}").format(sql.Literal(self.offset)))
        return sql.Composed(parts)


def _nonneg(key: str, value: str) -> int:
    if not value.isdigit():
        raise RpcError(400, "PGRST100", f'"failed to parse {key} parameter ({value})"')
    return int(value)


@dataclass
class RpcResult:
    """The body (decoded JSON), the rows on this page, the total (None
    unless counted), and whether the function returns a set."""

    body: Any
    rows: int
    total: int | None
    retset: bool


def call_rpc(conn: psycopg.Connection[Any], fn: str, body: dict[str, Any], *,
             role: str | None, claims: dict[str, Any] | None) -> Any:
    """What PostgREST runs for ``POST /rpc/<fn>`` with this JSON body, on an
    autocommit connection of the authenticator (here: the database owner).
    Returns the decoded JSON response; raises psycopg.Error or RpcError.
    ``role=None, claims=None`` calls as the connection's current role, with
    no request settings (a trusted backend's plain call)."""
    return run_rpc(conn, fn, body, role=role, claims=claims).body


def run_rpc(conn: psycopg.Connection[Any], fn: str, body: dict[str, Any], *,
            role: str | None, claims: dict[str, Any] | None, method: str = "POST",
            shape: Shape | None = None, count: bool = False) -> RpcResult:
    """``call_rpc`` for any method: GET and HEAD pass ``body`` (the query's
    arguments, text) and run read only; ``shape`` selects, filters, orders and
    pages the rows; ``count`` counts them all (Prefer: count=exact)."""
    shape = shape or Shape()
    read = method in ("GET", "HEAD")
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
    params: list[Any] = []
    if read:
        # QueryBuilder.hs fmtArgs: name := $n::type, the query's text value
        args = sql.SQL(", ").join(sql.SQL("{} := {}::{}").format(
            sql.Identifier(k), sql.Placeholder(), sql.SQL(type_of[k])) for k in keys)
        params.extend(str(body[k]) for k in keys)
        source = sql.SQL("select pgrst_call.* from {fn}({args}) pgrst_call").format(
            fn=fn_ident, args=args)
    elif keys:
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
        params.append(json.dumps(body))
    else:
        source = sql.SQL("select pgrst_call.* from {fn}() pgrst_call").format(fn=fn_ident)
    where, filter_values = shape.where()
    params.extend(filter_values)
    columns = sql.SQL("*") if shape.select is None else \
        sql.SQL(", ").join(sql.Identifier(c) for c in shape.select)
    render = ("coalesce(json_agg(_postgrest_t), '[]')" if retset
              else "coalesce(json_agg(_postgrest_t)->0, 'null')")
    total = sql.SQL("(select count(*) from pgrst_source)") if count else sql.SQL("null")
    query = sql.SQL(
        "with pgrst_source as (select * from ({source}) pgrst_rows{where}), "
        "pgrst_page as (select {columns} from pgrst_source{tail}) "
        "select {render}::text, count(*), {total} from pgrst_page _postgrest_t"
    ).format(source=source, where=where, columns=columns, tail=shape.tail(),
             render=sql.SQL(render), total=total)
    with conn.transaction():
        conn.execute("set transaction isolation level read committed, "
                     + ("read write" if volatility == "v" and not read else "read only"))
        if role is not None:
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        if claims is not None:
            conn.execute("select set_config('search_path', '\"public\"', true), "
                         "set_config('request.jwt.claims', %s, true), "
                         "set_config('request.method', %s, true), "
                         "set_config('request.path', %s, true)",
                         [json.dumps(claims), method, f"/rpc/{fn}"])
        text, rows, counted = conn.execute(query, params).fetchone()
    return RpcResult(json.loads(text), rows, counted, retset)


def content_range(offset: int, rows: int, total: int | None) -> str:
    """RangeQuery.hs contentRangeH: ``0-9/42``, ``0-9/*``, ``*/0``."""
    lower, upper = offset, offset + rows - 1
    shown = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    return f"{shown}/{'*' if total is None else total}"


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

    def respond(self, method: str, target: str, headers: Any,
                raw: bytes) -> tuple[int, dict[str, str], Any]:
        """(HTTP status, extra headers, JSON payload) of one request."""
        role, claims = ANON_ROLE, {}
        authorization = headers.get("Authorization", "")
        path, _, query_string = target.partition("?")
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
            read = method in ("GET", "HEAD")
            shape, args = Shape.parse(parse_qsl(query_string, keep_blank_values=True), read)
            if read:
                body: Any = args
            else:
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError as exc:
                    raise RpcError(400, "PGRST102", f"Invalid body: {exc}") from exc
                if not isinstance(body, dict):
                    raise RpcError(400, "PGRST102", "Invalid body: expected a JSON object")
            prefer = headers.get("Prefer", "")
            count = "count=exact" in prefer or "count=planned" in prefer \
                or "count=estimated" in prefer
            with self.pool.connection() as conn:
                result = run_rpc(conn, fn, body, role=role, claims=claims, method=method,
                                 shape=shape, count=count)
            extra = {"Content-Range": content_range(shape.offset, result.rows, result.total)}
            if OBJECT_MEDIA in headers.get("Accept", ""):
                if result.rows != 1:
                    raise RpcError(406, "PGRST116",
                                   "Cannot coerce the result to a single JSON object",
                                   f"The result contains {result.rows} rows")
                payload = result.body[0] if isinstance(result.body, list) else result.body
                return 200, {**extra, "Content-Type": OBJECT_MEDIA + "; charset=utf-8"}, payload
            status = 200
            if result.total is not None and result.rows < result.total:
                status = 206  # RangeQuery.hs rangeStatus: a partial page of a counted total
            return status, extra, result.body
        except RpcError as exc:
            return exc.status, {}, exc.body
        except psycopg.Error as exc:
            code = exc.diag.sqlstate or "PGRSTX00"
            return http_status(code, authed=role != ANON_ROLE), {}, {
                "code": code, "message": exc.diag.message_primary or str(exc),
                "details": exc.diag.message_detail, "hint": exc.diag.message_hint}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, extra, payload = stub.respond(method, self.path, self.headers, raw)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", extra.pop(
                    "Content-Type", "application/json; charset=utf-8"))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                if status == 401:
                    self.send_header("WWW-Authenticate", "Bearer")
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                self.answer("POST")

            def do_GET(self) -> None:  # noqa: N802
                self.answer("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self.answer("HEAD")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet

        return Handler
