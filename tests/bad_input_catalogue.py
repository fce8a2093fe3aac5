"""The bad-input catalogue, in one place: for each public function, calls
with wrong, hostile or odd arguments and what must happen, whichever way the
function is called (tests/test_bad_input_catalogue.py runs every case three
ways: plain SQL, the Python shim ``SessionLog``, and ``SupabaseSessionLog``
over supabase-py and the PostgREST stand-in).

An outcome is one of:

- ``Refused``: the server refuses with this SQLSTATE; the shim and the
  Supabase adapter raise this exception class; PostgREST answers this HTTP
  status; and nothing at all changed in the database;
- ``ClientRefused``: refused by the client library before anything is sent
  (psycopg cannot send a NUL in a text parameter; JSON has no NaN);
- ``Stored``: accepted, and the hostile value is stored literally (read back
  equal, character for character) in ``table.column`` of the calling user's
  rows; nothing else changed;
- ``Empty``: accepted and found nothing (an empty listing, ``deleted`` false,
  zero counts); nothing changed.

Hostile strings go into every text argument of every function: SQL
injection attempts (quotes, ``$$``, comments, ``%s``/``{}`` format
placeholders) combined with odd Unicode (right-to-left override, Hebrew and
Arabic, emoji and ZWJ sequences, combining marks, zero-width characters, a
BOM). None of them is executed: the functions never build SQL from their
arguments, and the test checks that the tables and the seed rows are intact.
Identifiers accept them (only control characters are refused in ids), the
enumerations (role, decision, risk_level) refuse them with 22023 naming the
argument.

Sizes: an id is 1 to 255 characters (code points: 255 emoji are fine). There
is no limit on content, model, title, prompt, response or metadata in SQL
today; we propose content <= 1 MiB (1,048,576 characters) and metadata
nesting <= 100 levels, and keep the cases that need them as strict xfails
(see docs/reliability.md). Plain SQL sends an integer beyond int4 quoted, as
psql users must (unquoted, PostgreSQL looks for a bigint overload: 42883).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sessionlog import IdempotencyConflict, InvalidArgument, NotOwner, SessionLogError

# --- the seed every case starts from --------------------------------------------------

SEED_USER = "u1"
OTHER_USER = "u2"
SEED_TOKEN = "existing"  # u1's session, holding one message with key SEED_KEY
SEED_UUID = "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"  # u1's session, addressed by UUID
SEED_KEY = "k1"
SEED_CONTENT = "first"

#: Replaced, at any depth of the arguments, by a user id of its own for each
#: (case, way): a case that writes does it as a brand-new user.
NEW = "<new user>"

# --- hostile and odd strings ----------------------------------------------------------

INJECTION = ("'); drop table sessionlog.messages; -- $$; drop schema sessionlog cascade; $$ "
             "\" or '1'='1' %s %(user_id)s {0} \\x27 ; select pg_sleep(10)")
ODD = ("\u202eevil\u202c שלום مرحبا 🧪👩‍💻🏳️‍🌈 e\u0301\u0338 zero\u200bwidth\u200d"
       "\ufeff\u00a0nbsp")
NASTY = f"{INJECTION} {ODD}"  # 150 characters, no control character: a valid id
assert len(NASTY) <= 255
EMOJI_255 = "🧪" * 255  # 255 characters, 1020 bytes: the longest id
COMBINING_255 = ("e\u0301" * 127) + "e"  # 255 code points that display as 128 letters
MIB = 1_048_576
MIB_ODD = (ODD * (MIB // len(ODD) + 1))[:MIB]  # the proposed content limit, exactly
TEN_MB = "x" * 10_000_000


@dataclass(frozen=True)
class DeepMetadata:
    """``{"a": {"a": ... {}}}`` nested ``depth`` levels (built per way: plain
    SQL sends the JSON text, the Python clients a nested dict)."""

    depth: int

    def value(self) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for _ in range(self.depth):
            nested = {"a": nested}
        return nested

    def text(self) -> str:
        return '{"a":' * self.depth + "{}" + "}" * self.depth


# --- outcomes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Refused:
    sqlstate: str
    error: type[SessionLogError]
    http: int
    #: strings the message must contain (the argument, the value...)
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientRefused:
    exception: type[BaseException]
    match: str


@dataclass(frozen=True)
class Stored:
    table: str
    column: str
    value: Any


@dataclass(frozen=True)
class Empty:
    pass


Outcome = Refused | ClientRefused | Stored | Empty


def invalid(*names: str, sqlstate: str = "22023") -> Refused:
    return Refused(sqlstate, InvalidArgument, 400, names)


NOT_OWNER = Refused("42501", NotOwner, 403, ("belongs to another user",))
CONFLICT = Refused("23505", IdempotencyConflict, 409, (SEED_KEY,))
EMPTY = Empty()

WAYS = ("sql", "shim", "supabase")


@dataclass(frozen=True)
class Case:
    id: str
    fn: str
    args: dict[str, Any]
    expect: Outcome
    #: another outcome for some ways; None: the way cannot express the call
    ways: Mapping[str, Outcome | None] = field(default_factory=dict)
    #: a known defect or an agreed proposal not implemented yet: way ("*" for
    #: all) -> reason; the case runs as a strict xfail for that way
    xfail: Mapping[str, str] = field(default_factory=dict)

    def outcome(self, way: str) -> Outcome | None:
        return self.ways.get(way, self.expect) if way in self.ways else self.expect

    def xfail_reason(self, way: str) -> str | None:
        return self.xfail.get(way) or self.xfail.get("*")


# --- the argument sets ----------------------------------------------------------------

def message(**changes: Any) -> dict[str, Any]:
    return {"user_id": NEW, "session_id": "chat", "role": "user", "content": "hi"} | changes


def element(**changes: Any) -> dict[str, Any]:
    return message(**changes)


def interaction(**changes: Any) -> dict[str, Any]:
    return {"user_id": NEW, "session_id": "chat", "prompt": "p", "response": "r"} | changes


def vector(**changes: Any) -> dict[str, Any]:
    return {"user_id": NEW, "session_id": "chat", "vector": [0.5, 1.0]} | changes


def decision(**changes: Any) -> dict[str, Any]:
    return {"user_id": NEW, "session_id": "chat", "decision": "allow"} | changes


INTRUDER = {"user_id": OTHER_USER, "session_id": SEED_UUID}
SAME_KEY = {"user_id": SEED_USER, "session_id": SEED_TOKEN, "client_message_id": SEED_KEY}

#: A NUL in a text argument: psycopg refuses it before sending ("PostgreSQL text
#: fields cannot contain NUL (0x00) bytes"); PostgreSQL refuses the JSON \u0000
#: (22P05); the Python clients refuse it before sending (22023, _calls).
NUL_WAYS: dict[str, Outcome | None] = {
    "sql": ClientRefused(psycopg.DataError, "NUL"),
    "shim": ClientRefused(InvalidArgument, "NUL"),
    "supabase": ClientRefused(InvalidArgument, "NUL")}
NUL_IN_JSON_WAYS: dict[str, Outcome | None] = {
    "shim": ClientRefused(InvalidArgument, "NUL"),
    "supabase": ClientRefused(InvalidArgument, "NUL")}
NO_JSON_NAN = ClientRefused(ValueError, "JSON")  # httpx: "Out of range float values..."
VECTOR_TYPE = ClientRefused(TypeError, "float")  # the clients convert the vector to floats


CASES: list[Case] = [
    # --- create_session -------------------------------------------------------------
    Case("create_session/user_id-empty", "create_session", {"user_id": ""},
         invalid("user_id", "empty")),
    Case("create_session/user_id-256-emoji", "create_session", {"user_id": "🧪" * 256},
         invalid("user_id", "256 characters")),
    Case("create_session/user_id-c1-control", "create_session", {"user_id": "nel\u0085"},
         invalid("user_id", "control character")),
    Case("create_session/user_id-nul", "create_session", {"user_id": "u\x00"},
         invalid(sqlstate="22P05"), ways=NUL_WAYS),
    Case("create_session/session_id-injection-with-newline", "create_session",
         {"user_id": NEW, "session_id": f"{INJECTION}\n{ODD}"}, invalid("session_id", "control")),
    Case("create_session/metadata-array", "create_session", {"user_id": NEW, "metadata": [1, 2]},
         invalid("metadata", "array")),
    Case("create_session/another-users-uuid", "create_session", dict(INTRUDER), NOT_OWNER),
    Case("create_session/user_id-nasty", "create_session", {"user_id": NASTY},
         Stored("users", "id", NASTY)),
    Case("create_session/user_id-255-emoji", "create_session", {"user_id": EMOJI_255},
         Stored("users", "id", EMOJI_255)),
    Case("create_session/session_id-nasty-token", "create_session",
         {"user_id": NEW, "session_id": NASTY}, Stored("sessions", "token", NASTY)),
    Case("create_session/session_id-255-combining", "create_session",
         {"user_id": NEW, "session_id": COMBINING_255}, Stored("sessions", "token", COMBINING_255)),
    Case("create_session/title-nasty", "create_session", {"user_id": NEW, "title": NASTY},
         Stored("sessions", "title", NASTY)),
    Case("create_session/metadata-nasty", "create_session",
         {"user_id": NEW, "metadata": {NASTY: [NASTY, {"x": ODD}]}},
         Stored("sessions", "metadata", {NASTY: [NASTY, {"x": ODD}]})),

    # --- log_message -----------------------------------------------------------------
    Case("log_message/role-injection", "log_message", message(role=INJECTION),
         invalid("role", "not accepted")),
    Case("log_message/role-zero-width", "log_message", message(role="user\u200b"),
         invalid("role")),
    Case("log_message/role-rtl-override", "log_message", message(role="\u202euser"),
         invalid("role")),
    Case("log_message/content-null", "log_message", message(content=None),
         invalid("content", "required")),
    Case("log_message/tokens-negative", "log_message", message(tokens=-1), invalid("tokens")),
    Case("log_message/tokens-beyond-integer", "log_message", message(tokens=3_000_000_000),
         invalid(sqlstate="22003")),
    Case("log_message/metadata-json-string", "log_message", message(metadata="text"),
         invalid("metadata", "string")),
    Case("log_message/client_message_id-256", "log_message",
         message(client_message_id="k" * 256), invalid("client_message_id", "256")),
    Case("log_message/client_message_id-c1-control", "log_message",
         message(client_message_id="k\u009f"), invalid("client_message_id", "control")),
    Case("log_message/session_id-empty", "log_message", message(session_id=""),
         invalid("session_id", "empty")),
    Case("log_message/another-users-uuid", "log_message", message(**INTRUDER), NOT_OWNER),
    Case("log_message/key-reused-other-content", "log_message",
         message(**SAME_KEY, content="other"), CONFLICT),
    Case("log_message/content-nul", "log_message", message(content="a\x00b"),
         invalid(sqlstate="22P05"), ways=NUL_WAYS),
    Case("log_message/content-10MB", "log_message", message(content=TEN_MB),
         invalid("content")),
    Case("log_message/metadata-150-levels", "log_message",
         message(metadata=DeepMetadata(150)), invalid("metadata")),
    # Far too deep for anyone: PostgreSQL's jsonb parser gives up (54001, before the
    # function runs: HTTP 500 through PostgREST); the Python clients refuse it
    # before encoding it (more than 100 levels: 22023).
    Case("log_message/metadata-100000-levels", "log_message",
         message(metadata=DeepMetadata(100_000)),
         Refused("54001", SessionLogError, 500, ("stack depth limit exceeded",)),
         ways={"shim": ClientRefused(InvalidArgument, "levels deep"),
               "supabase": ClientRefused(InvalidArgument, "levels deep")}),
    Case("log_message/user_id-nasty", "log_message", message(user_id=NASTY),
         Stored("users", "id", NASTY)),
    Case("log_message/session_id-nasty", "log_message", message(session_id=NASTY),
         Stored("sessions", "token", NASTY)),
    Case("log_message/content-nasty", "log_message", message(content=NASTY),
         Stored("messages", "content", NASTY)),
    Case("log_message/content-injection", "log_message", message(content=INJECTION),
         Stored("messages", "content", INJECTION)),
    Case("log_message/content-1MiB-odd-unicode", "log_message", message(content=MIB_ODD),
         Stored("messages", "content", MIB_ODD)),
    Case("log_message/model-nasty", "log_message", message(model=NASTY),
         Stored("messages", "model", NASTY)),
    Case("log_message/client_message_id-nasty", "log_message", message(client_message_id=NASTY),
         Stored("messages", "client_message_id", NASTY)),
    Case("log_message/metadata-nasty", "log_message",
         message(metadata={NASTY: NASTY, "n": [ODD, 1, None]}),
         Stored("messages", "metadata", {NASTY: NASTY, "n": [ODD, 1, None]})),
    Case("log_message/metadata-64-levels", "log_message",
         message(metadata=DeepMetadata(64)), Stored("messages", "metadata", DeepMetadata(64))),

    # --- log_messages ------------------------------------------------------------------
    Case("log_messages/element-role-injection", "log_messages",
         {"messages": [element(), element(role=INJECTION)]}, invalid("messages[1].role")),
    Case("log_messages/element-unknown-key-injection", "log_messages",
         {"messages": [element() | {"role; drop table sessionlog.users": "x"}]},
         invalid("messages[0]", "unknown key")),
    Case("log_messages/element-content-nul", "log_messages",
         {"messages": [element(content="a\x00b")]}, invalid(sqlstate="22P05"),
         ways=NUL_IN_JSON_WAYS),
    Case("log_messages/element-metadata-nul", "log_messages",
         {"messages": [element(metadata={"k": "\x00"})]}, invalid(sqlstate="22P05"),
         ways=NUL_IN_JSON_WAYS),
    Case("log_messages/element-another-users-uuid", "log_messages",
         {"messages": [element(), element(**INTRUDER)]}, NOT_OWNER),
    Case("log_messages/element-key-reused-other-content", "log_messages",
         {"messages": [element(**SAME_KEY, content="other")]}, CONFLICT),
    Case("log_messages/object-not-array", "log_messages", {"messages": element()},
         invalid("messages", "object")),
    Case("log_messages/10001-elements", "log_messages", {"messages": [element()] * 10_001},
         invalid("messages", "10000")),
    Case("log_messages/element-content-over-1MiB", "log_messages",
         {"messages": [element(), element(content="x" * (MIB + 1))]},
         invalid("messages[1].content")),
    Case("log_messages/element-user_id-number", "log_messages",
         {"messages": [element(user_id=123)]}, invalid("messages[0].user_id")),
    Case("log_messages/element-session_id-boolean", "log_messages",
         {"messages": [element(session_id=True)]}, invalid("messages[0].session_id")),
    Case("log_messages/element-model-array", "log_messages",
         {"messages": [element(model=["m"])]}, invalid("messages[0].model")),
    Case("log_messages/element-client_message_id-object", "log_messages",
         {"messages": [element(client_message_id={"k": 1})]},
         invalid("messages[0].client_message_id")),
    Case("log_messages/element-tokens-fraction", "log_messages",
         {"messages": [element(tokens=1.5)]}, invalid("messages[0].tokens")),
    Case("log_messages/element-user_id-nasty", "log_messages",
         {"messages": [element(user_id=NASTY)]}, Stored("users", "id", NASTY)),
    Case("log_messages/element-session_id-nasty", "log_messages",
         {"messages": [element(session_id=NASTY)]}, Stored("sessions", "token", NASTY)),
    Case("log_messages/element-content-nasty", "log_messages",
         {"messages": [element(content=NASTY), element(content=ODD)]},
         Stored("messages", "content", NASTY)),
    Case("log_messages/element-model-nasty", "log_messages",
         {"messages": [element(model=NASTY)]}, Stored("messages", "model", NASTY)),
    Case("log_messages/element-client_message_id-nasty", "log_messages",
         {"messages": [element(client_message_id=NASTY)]},
         Stored("messages", "client_message_id", NASTY)),
    Case("log_messages/element-metadata-64-levels", "log_messages",
         {"messages": [element(metadata=DeepMetadata(64))]},
         Stored("messages", "metadata", DeepMetadata(64))),

    # --- log_interaction ------------------------------------------------------------------
    Case("log_interaction/prompt-null", "log_interaction", interaction(prompt=None),
         invalid("prompt", "required")),
    Case("log_interaction/response-null", "log_interaction", interaction(response=None),
         invalid("response", "required")),
    Case("log_interaction/tokens-negative", "log_interaction", interaction(tokens=-5),
         invalid("tokens")),
    Case("log_interaction/metadata-array", "log_interaction", interaction(metadata=[NASTY]),
         invalid("metadata", "array")),
    Case("log_interaction/client_message_id-empty", "log_interaction",
         interaction(client_message_id=""), invalid("client_message_id", "empty")),
    Case("log_interaction/another-users-uuid", "log_interaction", interaction(**INTRUDER),
         NOT_OWNER),
    Case("log_interaction/key-of-a-lone-message", "log_interaction",
         interaction(**SAME_KEY, prompt=SEED_CONTENT), CONFLICT),
    Case("log_interaction/user_id-nasty", "log_interaction", interaction(user_id=NASTY),
         Stored("users", "id", NASTY)),
    Case("log_interaction/session_id-nasty", "log_interaction", interaction(session_id=NASTY),
         Stored("sessions", "token", NASTY)),
    Case("log_interaction/prompt-over-1MiB", "log_interaction",
         interaction(prompt="x" * (MIB + 1)), invalid("prompt")),
    Case("log_interaction/response-over-1MiB", "log_interaction",
         interaction(response="x" * (MIB + 1)), invalid("response")),
    Case("log_interaction/prompt-nasty", "log_interaction", interaction(prompt=NASTY),
         Stored("messages", "content", NASTY)),
    Case("log_interaction/response-nasty", "log_interaction", interaction(response=NASTY),
         Stored("messages", "content", NASTY)),
    Case("log_interaction/model-nasty", "log_interaction", interaction(model=NASTY),
         Stored("messages", "model", NASTY)),
    Case("log_interaction/client_message_id-nasty", "log_interaction",
         interaction(client_message_id=NASTY), Stored("messages", "client_message_id", NASTY)),

    # --- store_behavioral_vector ----------------------------------------------------------
    Case("store_behavioral_vector/empty", "store_behavioral_vector", vector(vector=[]),
         invalid("vector", "empty")),
    Case("store_behavioral_vector/nan", "store_behavioral_vector", vector(vector=[float("nan")]),
         invalid("vector", "NaN"), ways={"supabase": NO_JSON_NAN}),
    Case("store_behavioral_vector/infinity", "store_behavioral_vector",
         vector(vector=[1.0, float("inf")]), invalid("vector", "Infinity"),
         ways={"supabase": NO_JSON_NAN}),
    Case("store_behavioral_vector/4097-elements", "store_behavioral_vector",
         vector(vector=[0.5] * 4097), invalid("vector", "4097")),
    Case("store_behavioral_vector/null-element", "store_behavioral_vector",
         vector(vector=[0.5, None]), invalid("vector", "NULL"),
         ways={"shim": VECTOR_TYPE, "supabase": VECTOR_TYPE}),
    Case("store_behavioral_vector/two-dimensions", "store_behavioral_vector",
         vector(vector=[[1.0], [2.0]]), invalid("vector", "2 dimensions"),
         ways={"shim": VECTOR_TYPE, "supabase": VECTOR_TYPE}),
    Case("store_behavioral_vector/event_type-injection-with-newline", "store_behavioral_vector",
         vector(event_type=f"{INJECTION}\r\n{ODD}"), invalid("event_type", "control")),
    Case("store_behavioral_vector/another-users-uuid", "store_behavioral_vector",
         vector(**INTRUDER), NOT_OWNER),
    Case("store_behavioral_vector/vector-null", "store_behavioral_vector", vector(vector=None),
         invalid("vector")),
    Case("store_behavioral_vector/event_type-256", "store_behavioral_vector",
         vector(event_type="e" * 256), invalid("event_type", "255")),
    Case("store_behavioral_vector/event_type-nasty", "store_behavioral_vector",
         vector(event_type=NASTY), Stored("behavioral_vectors", "event_type", NASTY)),
    Case("store_behavioral_vector/user_id-nasty", "store_behavioral_vector",
         vector(user_id=NASTY), Stored("users", "id", NASTY)),
    Case("store_behavioral_vector/session_id-nasty", "store_behavioral_vector",
         vector(session_id=NASTY), Stored("sessions", "token", NASTY)),
    Case("store_behavioral_vector/metadata-nasty", "store_behavioral_vector",
         vector(metadata={NASTY: ODD}), Stored("behavioral_vectors", "metadata", {NASTY: ODD})),

    # --- store_auth_decision ----------------------------------------------------------------
    Case("store_auth_decision/decision-injection", "store_auth_decision",
         decision(decision=INJECTION), invalid("decision", "not accepted")),
    Case("store_auth_decision/decision-permit", "store_auth_decision",
         decision(decision="permit"), invalid("decision", "'permit'")),
    Case("store_auth_decision/decision-null", "store_auth_decision", decision(decision=None),
         invalid("decision", "required")),
    Case("store_auth_decision/confidence-1.5", "store_auth_decision", decision(confidence=1.5),
         invalid("confidence", "1.5")),
    Case("store_auth_decision/confidence-nan", "store_auth_decision",
         decision(confidence=float("nan")), invalid("confidence", "NaN"),
         ways={"supabase": NO_JSON_NAN}),
    Case("store_auth_decision/risk_score-negative", "store_auth_decision",
         decision(risk_score=-0.1), invalid("risk_score")),
    Case("store_auth_decision/risk_level-rtl-override", "store_auth_decision",
         decision(risk_level="\u202ehigh"), invalid("risk_level")),
    Case("store_auth_decision/risk_level-injection", "store_auth_decision",
         decision(risk_level=INJECTION), invalid("risk_level", "not accepted")),
    Case("store_auth_decision/another-users-uuid", "store_auth_decision", decision(**INTRUDER),
         NOT_OWNER),
    Case("store_auth_decision/user_id-nasty", "store_auth_decision", decision(user_id=NASTY),
         Stored("users", "id", NASTY)),
    Case("store_auth_decision/session_id-nasty", "store_auth_decision",
         decision(session_id=NASTY), Stored("sessions", "token", NASTY)),
    Case("store_auth_decision/metadata-nasty", "store_auth_decision",
         decision(metadata={"why": NASTY}), Stored("auth_decisions", "metadata", {"why": NASTY})),

    # --- the listings ---------------------------------------------------------------------
    Case("get_messages/max_rows-0", "get_messages",
         {"session_id": SEED_TOKEN, "user_id": SEED_USER, "max_rows": 0}, invalid("max_rows")),
    Case("get_messages/after_position-negative", "get_messages",
         {"session_id": SEED_TOKEN, "user_id": SEED_USER, "after_position": -1},
         invalid("after_position")),
    Case("get_messages/token-without-user", "get_messages", {"session_id": NASTY},
         invalid("user_id", "token")),
    Case("get_messages/session_id-escape-sequence", "get_messages",
         {"session_id": "chat\x1b[31m", "user_id": SEED_USER}, invalid("session_id", "control")),
    Case("get_messages/session_id-nasty", "get_messages",
         {"session_id": NASTY, "user_id": SEED_USER}, EMPTY),
    Case("get_messages/user_id-nasty", "get_messages",
         {"session_id": SEED_TOKEN, "user_id": NASTY}, EMPTY),
    Case("get_behavioral_vectors/max_rows-10001", "get_behavioral_vectors",
         {"session_id": SEED_TOKEN, "user_id": SEED_USER, "max_rows": 10_001},
         invalid("max_rows")),
    Case("get_behavioral_vectors/session_id-empty", "get_behavioral_vectors",
         {"session_id": "", "user_id": SEED_USER}, invalid("session_id", "empty")),
    Case("get_behavioral_vectors/session_id-nasty", "get_behavioral_vectors",
         {"session_id": NASTY, "user_id": SEED_USER}, EMPTY),
    Case("get_behavioral_vectors/user_id-nasty", "get_behavioral_vectors",
         {"session_id": SEED_TOKEN, "user_id": NASTY}, EMPTY),
    Case("get_behavioral_vectors/token-without-user", "get_behavioral_vectors",
         {"session_id": NASTY}, invalid("user_id", "token")),
    Case("get_auth_decisions/session_id-nasty", "get_auth_decisions",
         {"session_id": NASTY, "user_id": SEED_USER}, EMPTY),
    Case("get_auth_decisions/token-without-user", "get_auth_decisions",
         {"session_id": NASTY}, invalid("user_id", "token")),
    Case("get_auth_decisions/max_rows-negative", "get_auth_decisions",
         {"session_id": SEED_TOKEN, "user_id": SEED_USER, "max_rows": -1}, invalid("max_rows")),
    Case("get_auth_decisions/user_id-c1-control", "get_auth_decisions",
         {"session_id": SEED_TOKEN, "user_id": "u\u0085"}, invalid("user_id", "control")),
    Case("get_auth_decisions/user_id-nasty", "get_auth_decisions",
         {"session_id": SEED_TOKEN, "user_id": NASTY}, EMPTY),
    Case("list_sessions/user_id-null", "list_sessions", {"user_id": None},
         invalid("user_id", "required")),
    Case("list_sessions/max_rows-0", "list_sessions", {"user_id": SEED_USER, "max_rows": 0},
         invalid("max_rows")),
    Case("list_sessions/user_id-nasty", "list_sessions", {"user_id": NASTY}, EMPTY),
    Case("auth_decision_summary/since-after-until", "auth_decision_summary",
         {"user_id": SEED_USER, "since": "2030-01-02T00:00:00+00:00",
          "until": "2030-01-01T00:00:00+00:00"}, invalid("since")),
    Case("auth_decision_summary/user_id-null", "auth_decision_summary", {"user_id": None},
         invalid("user_id", "required")),
    Case("auth_decision_summary/user_id-empty", "auth_decision_summary", {"user_id": ""},
         invalid("user_id", "empty")),
    Case("auth_decision_summary/user_id-nasty", "auth_decision_summary", {"user_id": NASTY},
         EMPTY),

    # --- conversation verbs ----------------------------------------------------------------
    Case("pop_message/token-without-user", "pop_message", {"session_id": SEED_TOKEN},
         invalid("user_id", "token")),
    Case("pop_message/session_id-nasty", "pop_message",
         {"session_id": NASTY, "user_id": SEED_USER}, EMPTY),
    Case("pop_message/user_id-nasty", "pop_message",
         {"session_id": SEED_TOKEN, "user_id": NASTY}, EMPTY),
    Case("pop_message/another-users-uuid", "pop_message", dict(INTRUDER), EMPTY),
    Case("clear_messages/session_id-null", "clear_messages",
         {"session_id": None, "user_id": SEED_USER}, invalid("session_id", "required")),
    Case("clear_messages/session_id-nasty", "clear_messages",
         {"session_id": NASTY, "user_id": SEED_USER}, EMPTY),
    Case("clear_messages/user_id-nasty", "clear_messages",
         {"session_id": SEED_TOKEN, "user_id": NASTY}, EMPTY),
    Case("clear_messages/another-users-uuid", "clear_messages", dict(INTRUDER), EMPTY),
    Case("update_session/title-1001", "update_session",
         {"session_id": SEED_TOKEN, "user_id": SEED_USER, "title": "t" * 1001},
         invalid("title", "1001")),
    Case("update_session/metadata-array", "update_session",
         {"session_id": SEED_TOKEN, "user_id": SEED_USER, "metadata": [1]},
         invalid("metadata", "array")),
    Case("update_session/session_id-nasty", "update_session",
         {"session_id": NASTY, "user_id": SEED_USER, "title": "t"},
         invalid("session_id", "no session")),
    Case("update_session/user_id-nasty", "update_session",
         {"session_id": SEED_TOKEN, "user_id": NASTY, "title": "t"},
         invalid("session_id", "no session")),
    Case("update_session/title-nasty-on-an-unknown-session", "update_session",
         {"session_id": "no-such-session", "user_id": SEED_USER, "title": NASTY},
         invalid("session_id", "no session")),
    Case("update_session/another-users-uuid", "update_session", {**INTRUDER, "title": "t"},
         invalid("session_id", "no session")),
    Case("prune_sessions/inactive_before-null", "prune_sessions", {"inactive_before": None},
         invalid("inactive_before", "required")),
    Case("prune_sessions/inactive_before-future", "prune_sessions",
         {"inactive_before": "2999-01-01T00:00:00+00:00"}, invalid("inactive_before", "future")),
    Case("prune_sessions/max_sessions-0", "prune_sessions",
         {"inactive_before": "2000-01-01T00:00:00+00:00", "max_sessions": 0},
         invalid("max_sessions")),
    Case("prune_sessions/user_id-empty", "prune_sessions",
         {"inactive_before": "2000-01-01T00:00:00+00:00", "user_id": ""},
         invalid("user_id", "empty")),
    Case("prune_sessions/user_id-nasty", "prune_sessions",
         {"inactive_before": "2020-01-01T00:00:00+00:00", "user_id": NASTY}, EMPTY),

    # --- deletes ------------------------------------------------------------------------
    Case("delete_session/session_id-null", "delete_session",
         {"session_id": None, "user_id": SEED_USER}, invalid("session_id", "required")),
    Case("delete_session/token-without-user", "delete_session", {"session_id": SEED_TOKEN},
         invalid("user_id", "token")),
    Case("delete_session/user_id-256", "delete_session",
         {"session_id": SEED_TOKEN, "user_id": "u" * 256}, invalid("user_id", "256")),
    Case("delete_session/session_id-nasty", "delete_session",
         {"session_id": NASTY, "user_id": SEED_USER}, EMPTY),
    Case("delete_session/user_id-nasty", "delete_session",
         {"session_id": SEED_TOKEN, "user_id": NASTY}, EMPTY),
    Case("delete_session/another-users-uuid", "delete_session", dict(INTRUDER), EMPTY),
    Case("forget_user/user_id-null", "forget_user", {"user_id": None},
         invalid("user_id", "required")),
    Case("forget_user/user_id-whitespace", "forget_user", {"user_id": " \t "},
         invalid("user_id", "empty")),
    Case("forget_user/user_id-nasty", "forget_user", {"user_id": NASTY}, EMPTY),
]

assert len({case.id for case in CASES}) == len(CASES)
