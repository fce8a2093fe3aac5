"""A PL/Proxy router over sessionlog shards: ``sessionlog sql router``.

Each shard is an ordinary sessionlog install (``sessionlog migrate``). The
router database holds the same public functions, written as thin PL/pgSQL
wrappers over PL/Proxy functions that forward the call to the shard that owns
its user::

    from sessionlog.router import router_script
    sql = router_script(["host=db1 dbname=app", "host=db2 dbname=app"])

The script is generated from a shard's catalog (``pg_proc``: the functions of
``_calls.CALLS``, their arguments and result types), so a new function or
parameter needs no change here. One rule per shape of function:

- a ``user_id`` parameter: the call runs on the shard of
  ``hashtext(btrim(user_id))``; with ``user_id`` NULL (a session addressed by
  UUID alone, or a global maintenance call such as ``prune_sessions``) it
  runs on every shard, one after the other, and the answers are merged;
- no ``user_id`` but one ``jsonb`` parameter (``log_messages``): a batch,
  run on the one shard of its elements' users, refused with 22023 when they
  live on more than one;
- anything else runs on every shard, merged.

Merging: a listing is the rows of every shard; a single row adds up the
numbers and ORs the booleans of the shards that answered (the shard owning
the session gives the figures, the others zeros and false). A shard refusing
with a 22xxx error (e.g. an unknown session) while another answered is left
out; any other error, or an error from every shard, is raised.

PL/Proxy reports a shard's error with its SQLSTATE and a prefix
(``<fn>(<n>): [<db>] REMOTE ERROR: <message>``, ``Remote hint: <hint>``);
``remote_error`` gives the original text back (errors.py calls it). A shard
it cannot reach is an XX000 naming libpq's call (``[<db>] PQconnectPoll:
<reason>``); ``shard_unreachable`` tells errors.py to raise ConnectionFailed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: The PL/Proxy cluster (a foreign server) the router's functions run on.
CLUSTER = "sessionlog"
#: The router's own helpers and the PL/Proxy functions behind the wrappers.
ROUTER_SCHEMA = "sessionlog_router"
#: Whitespace trimmed from ids, as the shards trim it (sessionlog._id).
_TRIM = r"E' \t\n\r\f\x0B'"

_REMOTE = re.compile(r"^[^\n]*?\(\d+\): \[[^\]\n]*\] REMOTE [A-Z]+: (.*)$", re.DOTALL)
_UNREACHABLE = re.compile(r"^[^\n]*?\(\d+\): \[[^\]\n]*\] PQ\w+: ")


def remote_error(
    message: str, detail: str | None = None, hint: str | None = None
) -> tuple[str, str | None, str | None]:
    """The shard's own message, detail and hint of an error relayed by
    PL/Proxy (unchanged when it was not relayed; unwraps nested routers)."""
    while True:
        match = _REMOTE.match(message)
        if not match:
            return message, detail, hint
        message = match.group(1)
        if detail and detail.startswith("Remote detail: "):
            detail = detail[len("Remote detail: "):]
        if hint and hint.startswith("Remote hint: "):
            hint = hint[len("Remote hint: "):]


def shard_unreachable(sqlstate: str | None, message: str) -> bool:
    """Whether an error is PL/Proxy failing to connect to a shard or losing
    its connection (libpq's failure, which PL/Proxy raises as XX000)."""
    return sqlstate == "XX000" and _UNREACHABLE.match(message) is not None


# --- the catalog of a shard -------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Function:
    """One public function of a shard, as pg_proc describes it."""

    name: str
    arguments: str  # pg_get_function_arguments: names, types, defaults, OUT
    result: str  # pg_get_function_result
    returns_set: bool
    inputs: tuple[Column, ...]
    columns: tuple[Column, ...]  # the result's columns
    row_type: str | None  # the composite type it returns, when it returns one
    comment: str | None


@dataclass(frozen=True)
class CompositeType:
    name: str  # qualified, e.g. sessionlog.log_message_result
    attributes: str  # '"position" bigint, ...', the form the script compares


_FUNCTIONS = """
select p.proname as name,
       pg_catalog.pg_get_function_arguments(p.oid) as arguments,
       pg_catalog.pg_get_function_result(p.oid) as result,
       p.proretset as returns_set,
       case when t.typtype = 'c' then pg_catalog.format_type(p.prorettype, null) end as row_type,
       t.typrelid as row_relid,
       pg_catalog.obj_description(p.oid, 'pg_proc') as comment,
       array(select pg_catalog.jsonb_build_array(
                        a.name, pg_catalog.format_type(a.type, null), a.mode)
             from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                            coalesce(p.proargmodes, pg_catalog.array_fill(
                                'i'::"char", array[p.pronargs])),
                            p.proargnames) with ordinality as a(type, mode, name, n)
             order by a.n) as args
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
join pg_catalog.pg_type t on t.oid = p.prorettype
where n.nspname = 'public' and p.proname = any(%s)
order by p.proname
"""

_ATTRIBUTES = """
select pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) operator(pg_catalog.||) ' '
                             operator(pg_catalog.||)
                             pg_catalog.format_type(a.atttypid, a.atttypmod), ', '
                             order by a.attnum),
       array_agg(pg_catalog.jsonb_build_array(
           a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)) order by a.attnum)
from pg_catalog.pg_attribute a
where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
"""


def read_catalog(conninfo: str, names: Sequence[str]) -> tuple[list[Function], list[CompositeType]]:
    """The public functions ``names`` of the sessionlog install at
    ``conninfo`` and the composite types they return."""
    import psycopg

    functions: list[Function] = []
    types: dict[str, CompositeType] = {}
    # Every type name comes out schema-qualified unless it is pg_catalog's.
    with psycopg.connect(conninfo, options="-c search_path=pg_catalog") as conn:
        rows = conn.execute(_FUNCTIONS, [list(names)]).fetchall()
        found = {row[0] for row in rows}
        missing = sorted(set(names) - found)
        if missing:
            raise ValueError(f"the shard has no function {', '.join(missing)}: "
                             "install it with `sessionlog migrate` first")
        dupes = sorted({r[0] for r in rows if sum(1 for s in rows if s[0] == r[0]) > 1})
        if dupes:
            raise ValueError(f"the shard has more than one {', '.join(dupes)}: "
                             "sessionlog functions are never overloaded")
        for name, arguments, result, returns_set, row_type, row_relid, comment, args in rows:
            inputs = tuple(Column(a[0], a[1]) for a in args if a[2] in ("i", "b", "v"))
            outs = tuple(Column(a[0], a[1]) for a in args if a[2] in ("o", "b", "t"))
            if row_type is not None and not outs:
                attributes, columns = conn.execute(_ATTRIBUTES, [row_relid]).fetchone()
                types[row_type] = CompositeType(row_type, attributes)
                outs = tuple(Column(c[0], c[1]) for c in columns)
            elif not outs:
                outs = (Column(name, result.removeprefix("SETOF ")),)
                row_type = None
            else:
                row_type = None
            if any(not c.name for c in inputs):
                raise ValueError(f"{name} has an unnamed parameter")
            functions.append(Function(name, arguments, result, returns_set, inputs, outs,
                                      row_type, comment))
    return functions, list(types.values())


# --- the cluster --------------------------------------------------------------

def partition_map(shards: int, partitions: int | None = None) -> list[int]:
    """The shard of each partition: PL/Proxy hashes into a power-of-two
    number of partitions (``hash & (partitions - 1)``), at least one per
    shard; partition p belongs to shard ``p % shards``."""
    if shards < 1:
        raise ValueError("give at least one shard")
    if partitions is None:
        partitions = 1
        while partitions < shards:
            partitions *= 2
    if partitions < shards or partitions & (partitions - 1):
        raise ValueError(f"partitions must be a power of two >= the {shards} shards, "
                         f"not {partitions}")
    return [p % shards for p in range(partitions)]


def _split_credentials(shards: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Each DSN without user and password, and the user and password they
    share (a PL/Proxy user mapping holds them for the whole cluster)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsns, credentials = [], []
    for dsn in shards:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
        credentials.append({k: params.pop(k) for k in ("user", "password") if k in params})
        dsns.append(make_conninfo(**params))
    if any(c != credentials[0] for c in credentials):
        raise ValueError("every shard DSN must name the same user and password (or none): "
                         "the router logs in to all shards with one user mapping")
    return dsns, credentials[0]


# --- SQL text -------------------------------------------------------------------

def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _set_options(alter: str) -> str:
    """PL/pgSQL that runs ``<alter> options (...)``, setting or adding each
    key of ``wanted`` (the options now are ``current_options``) after the
    ``changes`` already listed."""
    return f"""    for key in select pg_catalog.jsonb_object_keys(wanted) loop
        changes := changes || pg_catalog.format('%s %I %L',
            case when exists (select from pg_catalog.unnest(current_options) o
                              where pg_catalog.split_part(o, '=', 1) = key)
                 then 'set' else 'add' end,
            key, wanted ->> key);
    end loop;
    execute pg_catalog.format('{alter} options (%s)',
                              pg_catalog.array_to_string(changes, ', '));"""


def _ident(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _dollar(body: str, tag: str = "$sql$") -> str:
    if tag in body:
        raise ValueError(f"{tag} occurs in a generated body")
    return f"{tag}{body}{tag}"


_NUMERIC = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}


def _header(shard_dsns: Sequence[str], partitions: list[int]) -> str:
    lines = [
        "-- sessionlog router: the public API of sessionlog, each call forwarded with",
        "-- PL/Proxy to the shard that owns its user. Generated by",
        "-- `sessionlog sql router` from a shard's catalog; run it again (it is",
        "-- idempotent) after upgrading the shards or changing the shard list.",
        f"-- {len(shard_dsns)} shard(s) on {len(partitions)} partition(s): a user's partition is",
        f"-- hashtext(btrim(user_id)) & {len(partitions) - 1}; partition p is on shard p % "
        f"{len(shard_dsns)}.",
    ]
    lines += [f"--   shard {i}: {dsn}" for i, dsn in enumerate(shard_dsns)]
    return "\n".join(lines) + "\n"


def _cluster_sql(dsns: list[str], partitions: list[int], credentials: dict[str, str]) -> str:
    wanted = {f"p{p}": dsns[shard] for p, shard in enumerate(partitions)}
    # Close connections after 30 minutes: a shard that moved is found again.
    wanted["connection_lifetime"] = "1800"
    pairs = ", ".join(f"{_literal(k)}, {_literal(v)}" for k, v in wanted.items())
    creation = ", ".join(f"{k} {_literal(v)}" for k, v in wanted.items())
    text = f"""
-- The cluster: one option p<N> per partition. An existing server gets exactly
-- these options (the others are dropped), keeping its user mappings.
do $do$
declare
    wanted jsonb := pg_catalog.jsonb_build_object({pairs});
    current_options text[];
    changes text[] := '{{}}';
    key text;
begin
    select s.srvoptions into current_options
    from pg_catalog.pg_foreign_server s where s.srvname = {_literal(CLUSTER)};
    if not found then
        execute 'create server {CLUSTER} foreign data wrapper plproxy options ({creation.replace("'", "''")})';
        return;
    end if;
    for key in
        select pg_catalog.split_part(o, '=', 1) from pg_catalog.unnest(current_options) o
    loop
        if not wanted ? key then
            changes := changes || pg_catalog.format('drop %I', key);
        end if;
    end loop;
{_set_options(f'alter server {CLUSTER}')}
end
$do$;
"""
    if credentials:
        options = ", ".join(f"{_literal(k)}, {_literal(v)}" for k, v in credentials.items())
        text += f"""
-- The shards' login (from the shard DSNs): a user mapping, whose options only
-- the server's owner and superusers can read.
do $do$
declare
    wanted jsonb := pg_catalog.jsonb_build_object({options});
    changes text[] := '{{}}';
    key text;
    current_options text[];
begin
    select m.umoptions into current_options from pg_catalog.pg_user_mappings m
    where m.srvname = {_literal(CLUSTER)} and m.umuser = 0;
    if not found then
        execute 'create user mapping for public server {CLUSTER}';
    end if;
{_set_options(f'alter user mapping for public server {CLUSTER}')}
end
$do$;
"""
    else:
        text += f"""
-- No login in the shard DSNs: the router logs in to the shards as the role
-- that calls it (add user and password options to this mapping to change that).
create user mapping if not exists for public server {CLUSTER};
"""
    return text


_TRUSTED_ERROR = """
        raise exception using
            errcode = 'insufficient_privilege',
            message = pg_catalog.format('the sessionlog router serves trusted backends only, not %s',
                                        refused),
            hint = 'a signed-in client calls a single-node sessionlog (PostgREST/Supabase); '
                'the router forwards calls to the shards as its own trusted login'"""


def _helpers_sql() -> str:
    s = ROUTER_SCHEMA
    return f"""
-- Refuses a caller that is not a trusted backend: the router logs in to the
-- shards as a trusted role, so a JWT's identity would not reach them.
create or replace function {s}._trusted()
    returns void
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $fn$
declare
    claims text := pg_catalog.current_setting('request.jwt.claims', true);
    refused text;
begin
    if current_user operator(pg_catalog.=) any (array['anon', 'authenticated']::name[]) then
        refused := current_user;
    elsif coalesce(claims, '') <> '' then
        refused := case when claims ~ '^\\s*\\{{' then claims::jsonb ->> 'role' end;
        if refused = 'service_role' then
            refused := null;
        else
            refused := coalesce('a JWT of role ' || refused, 'a JWT without a role');
        end if;
    end if;
    if refused is not null then{_TRUSTED_ERROR};
    end if;
end
$fn$;

-- The PL/Proxy hash of a user: what routes every call naming a user.
create or replace function {s}._checked_route(user_id text)
    returns integer
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $fn$
begin
    perform {s}._trusted();
    return pg_catalog.hashtext(pg_catalog.btrim(user_id, {_TRIM}));
end
$fn$;

-- The same, in SQL without SET so that the planner inlines it into each
-- call: a caller that is neither anon nor authenticated and carries no JWT
-- (a backend's own login, the common case) costs no function call.
create or replace function {s}._route(user_id text)
    returns integer
    stable
    security invoker
    language sql
as $fn$
    select case
        when current_user operator(pg_catalog.<>) all (array['anon', 'authenticated']::pg_catalog.name[])
             and coalesce(pg_catalog.current_setting('request.jwt.claims', true), '')
                 operator(pg_catalog.=) ''
        then pg_catalog.hashtext(pg_catalog.btrim(user_id, {_TRIM}))
        else {s}._checked_route(user_id) end
$fn$;

-- The partitions of the cluster and the shard (connect string) of each, as
-- the foreign server's options say.
create or replace function {s}._partitions(out partition integer, out shard text)
    returns setof record
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language sql
as $fn$
    select pg_catalog.substr(o, 2, pg_catalog.strpos(o, '=') - 2)::integer,
           pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1)
    from pg_catalog.pg_foreign_server f, pg_catalog.unnest(f.srvoptions) o
    where f.srvname = {_literal(CLUSTER)} and o ~ '^p[0-9]+='
$fn$;

-- The partition PL/Proxy maps a hash to.
create or replace function {s}._partition_of(hash integer)
    returns integer
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language sql
as $fn$
    select case
        when exists (select from pg_catalog.pg_foreign_server f, pg_catalog.unnest(f.srvoptions) o
                     where f.srvname = {_literal(CLUSTER)} and o = 'modular_mapping=1')
        then pg_catalog.abs(hash % n)
        else hash & (n - 1) end
    from (select count(*)::integer as n from {s}._partitions()) c
$fn$;

-- One route per shard (the lowest partition on it): how a call that names no
-- user visits every shard once.
create or replace function {s}._every_shard()
    returns setof integer
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $fn$
begin
    perform {s}._trusted();
    return query select min(p.partition) from {s}._partitions() p group by p.shard order by 1;
end
$fn$;

-- The route of a batch: the shard of its elements' user_id, NULL when no
-- element names a user (the shards then say what is wrong). A batch whose
-- users live on more than one shard is refused: each shard commits on its
-- own, so such a batch could not be all-or-nothing.
create or replace function {s}._batch_route(batch jsonb, argument text)
    returns integer
    stable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $fn$
declare
    shards bigint;
    route integer;
begin
    perform {s}._trusted();
    if pg_catalog.jsonb_typeof(batch) is distinct from 'array' then
        return null;
    end if;
    select count(distinct p.shard), min(u.hash) into shards, route
    from (select pg_catalog.hashtext(pg_catalog.btrim(e ->> 'user_id', {_TRIM})) as hash
          from pg_catalog.jsonb_array_elements(batch) e
          where pg_catalog.jsonb_typeof(e) = 'object' and e ->> 'user_id' is not null) u
    join {s}._partitions() p on p.partition = {s}._partition_of(u.hash);
    if shards > 1 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = pg_catalog.format(
                'invalid %s: its users live on %s shards, a batch must stay on one',
                argument, shards),
            hint = 'send one batch per user (each call is atomic on its shard)';
    end if;
    return route;
end
$fn$;

-- Raises an error kept from a shard (RAISE cannot take a NULL detail or hint).
create or replace function {s}._raise(state text, message text, detail text, hint text)
    returns void
    immutable
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as $fn$
begin
    if detail is null and hint is null then
        raise exception using errcode = state, message = message;
    elsif detail is null then
        raise exception using errcode = state, message = message, hint = hint;
    elsif hint is null then
        raise exception using errcode = state, message = message, detail = detail;
    end if;
    raise exception using errcode = state, message = message, detail = detail, hint = hint;
end
$fn$;
"""


def _types_sql(types: list[CompositeType]) -> str:
    parts = []
    for t in types:
        parts.append(f"""
do $do$
begin
    if (select pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) operator(pg_catalog.||) ' '
                operator(pg_catalog.||) pg_catalog.format_type(a.atttypid, a.atttypmod), ', '
                order by a.attnum)
        from pg_catalog.pg_attribute a
        where a.attrelid = pg_catalog.to_regclass({_literal(t.name)}) and a.attnum > 0
          and not a.attisdropped) is distinct from {_literal(t.attributes)} then
        if pg_catalog.to_regtype({_literal(t.name)}) is not null then
            drop type {t.name} cascade;  -- its functions are created again below
        end if;
        create type {t.name} as ({t.attributes});
    end if;
end
$do$;
""")
    return "".join(parts)


def _shape(fn: Function) -> str:
    names = {c.name for c in fn.inputs}
    if "user_id" in names:
        return "user"
    if sum(1 for c in fn.inputs if c.type == "jsonb") == 1:
        return "batch"
    return "every"


def _inner_sql(fn: Function) -> str:
    """The PL/Proxy function: the call, on the shard of ``route``."""
    if "route" in {c.name for c in fn.inputs}:
        raise ValueError(f"{fn.name} has a parameter named route")
    params = ", ".join(["route integer"] + [f"{_ident(c.name)} {c.type}" for c in fn.inputs])
    args = ", ".join(f"${i + 2}::{c.type}" for i, c in enumerate(fn.inputs))
    if fn.row_type:
        returns = f"setof {fn.row_type}"
    else:
        returns = "table(" + ", ".join(f"{_ident(c.name)} {c.type}" for c in fn.columns) + ")"
    body = f"""
    cluster {_literal(CLUSTER)};
    run on route;
    select * from public.{_ident(fn.name)}({args});
"""
    return f"""
create or replace function {ROUTER_SCHEMA}.{_ident(fn.name)}({params})
    returns {returns}
    volatile
    security invoker
    language plproxy
as {_dollar(body)};
"""


def _merge(fn: Function, target: str, row: str) -> list[str]:
    """Statements folding the row ``row`` into the variables ``target<i>``."""
    lines = []
    for i, c in enumerate(fn.columns):
        acc, value = f"{target}{i}", f"{row}.{_ident(c.name)}"
        if c.type in _NUMERIC:
            expr = f"coalesce({acc} + {value}, {acc}, {value})"
        elif c.type == "boolean":
            expr = f"coalesce({acc} or {value}, {acc}, {value})"
        else:
            expr = f"coalesce({acc}, {value})"
        lines.append(f"{acc} := {expr};")
    return lines


def _wrapper_sql(fn: Function) -> str:
    """The public function: the same signature as on a shard, routed."""
    q = _ident(fn.name)
    inner = f"{ROUTER_SCHEMA}.{q}"
    args = ", ".join(f"{q}.{_ident(c.name)}" for c in fn.inputs)
    call = f"{inner}(%s{', ' + args if args else ''})"
    shape = _shape(fn)
    declare = ["route integer;", f"r {fn.row_type or 'record'};", "answered boolean := false;",
               "state text;", "message text;", "detail text;", "hint text;",
               "kept_state text;", "kept_message text;", "kept_detail text;", "kept_hint text;"]
    single = not fn.returns_set
    if single:
        declare += [f"merged{i} {c.type};" for i, c in enumerate(fn.columns)]

    def finish_row(source: str) -> list[str]:
        """Return one row: ``source`` is a record or merged<i> variables."""
        if source == "r":
            if fn.row_type:
                return ["return r;"]
            values = [f"r.{_ident(c.name)}" for c in fn.columns]
        else:
            values = [f"merged{i}" for i in range(len(fn.columns))]
        if fn.row_type:
            return [f"return row({', '.join(values)})::{fn.row_type};"]
        return [f"{q}.{_ident(c.name)} := {v};" for c, v in zip(fn.columns, values)] + ["return;"]

    def one_shard(route: str) -> list[str]:
        if single:
            return [f"select * into r from {call % route};", *finish_row("r")]
        return [f"return query select * from {call % route};", "return;"]

    if single:
        on_shard = [f"select * into r from {call % 'route'};",
                    *_merge(fn, "merged", "r")]
    else:
        on_shard = [f"return query select * from {call % 'route'};"]
    every = [
        f"for route in select {ROUTER_SCHEMA}._every_shard() loop",
        "    begin",
        *(f"        {line}" for line in on_shard),
        "        answered := true;",
        "    exception when others then",
        "        get stacked diagnostics state = returned_sqlstate, message = message_text,",
        "            detail = pg_exception_detail, hint = pg_exception_hint;",
        "        -- Keep the first error, or the first that is not a 22xxx.",
        "        if kept_state is null or (kept_state like '22%' and state not like '22%') then",
        "            kept_state := state; kept_message := message;",
        "            kept_detail := nullif(detail, ''); kept_hint := nullif(hint, '');",
        "        end if;",
        "    end;",
        "end loop;",
        "if kept_state is not null and (not answered or kept_state not like '22%') then",
        f"    perform {ROUTER_SCHEMA}._raise(kept_state, kept_message, kept_detail, kept_hint);",
        "end if;",
        *(finish_row("merged") if single else ["return;"]),
    ]
    if shape == "user":
        body = [f"if {q}.user_id is not null then",
                *(f"    {line}" for line in one_shard(f"{ROUTER_SCHEMA}._route({q}.user_id)")),
                "end if;",
                "-- No user: every shard (a session by UUID, a global call).",
                *every]
    elif shape == "batch":
        batch = next(c for c in fn.inputs if c.type == "jsonb").name
        body = [f"route := {ROUTER_SCHEMA}._batch_route({q}.{_ident(batch)}, "
                f"{_literal(batch)});",
                "if route is not null then",
                *(f"    {line}" for line in one_shard("route")),
                "end if;",
                "-- No user named in the batch: every shard says what is wrong.",
                *every]
    else:
        body = every
    text = "\n".join(["declare", *(f"    {d}" for d in declare), "begin",
                      *(f"    {line}" for line in body), "end", ""])
    comment = ""
    if fn.comment:
        comment = f"\ncomment on function public.{q} is {_literal(fn.comment)};"
    return f"""
-- {fn.name}: {_SHAPES[shape]}
do $do$
declare
    existing regprocedure;
begin
    for existing in
        select p.oid from pg_catalog.pg_proc p
        where p.pronamespace = 'public'::regnamespace and p.proname = {_literal(fn.name)}
          and (pg_catalog.pg_get_function_arguments(p.oid) <> {_literal(fn.arguments)}
               or pg_catalog.pg_get_function_result(p.oid) <> {_literal(fn.result)})
    loop
        execute pg_catalog.format('drop function %s', existing);
    end loop;
end
$do$;
create or replace function public.{q}({fn.arguments})
    returns {fn.result}
    volatile
    security invoker
    set search_path = pg_catalog, pg_temp
    language plpgsql
as {_dollar(chr(10) + text, "$fn$")};{comment}
revoke all on function public.{q} from public;
"""


_SHAPES = {
    "user": "on the shard of user_id; with user_id NULL on every shard, merged",
    "batch": "on the one shard of the batch's users",
    "every": "on every shard, merged",
}


def router_script(
    shards: Sequence[str],
    *,
    partitions: int | None = None,
    catalog: str | None = None,
) -> str:
    """One idempotent SQL script (one transaction) that makes the database
    it runs in a PL/Proxy router over ``shards`` (DSNs as the router's
    server reaches them). The API is read from ``catalog`` (a DSN this
    process can reach; default: the first shard)."""
    from ._calls import CALLS

    if not shards:
        raise ValueError("give at least one shard DSN")
    part_map = partition_map(len(shards), partitions)
    dsns, credentials = _split_credentials(shards)
    functions, types = read_catalog(catalog or shards[0], list(CALLS))
    s = ROUTER_SCHEMA
    grants = f"""
-- Trusted backends only: the owner, and service_role where it exists.
revoke all on schema {s} from public;
revoke all on all functions in schema {s} from public;
do $do$
begin
    if exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
        grant usage on schema sessionlog, {s} to service_role;
        grant execute on all functions in schema {s} to service_role;
        grant usage on foreign server {CLUSTER} to service_role;
"""
    grants += "".join(
        f"        grant execute on function public.{_ident(fn.name)} to service_role;\n"
        for fn in functions)
    grants += """    end if;
end
$do$;
"""
    return "".join([
        _header([" ".join(d.split()) for d in dsns], part_map),
        "\nbegin;\nset local search_path = pg_catalog;\n",
        "create extension if not exists plproxy;\n",
        f"create schema if not exists sessionlog;\ncreate schema if not exists {s};\n",
        _cluster_sql(dsns, part_map, credentials),
        _types_sql(types),
        _helpers_sql(),
        *(_inner_sql(fn) for fn in functions),
        *(_wrapper_sql(fn) for fn in functions),
        grants,
        "\ncommit;\n",
    ])
