"""``SupabaseSessionLog``: the same API over a supabase-py client's ``rpc()``.

::

    from supabase import create_client
    log = SupabaseSessionLog(create_client(url, key))
    log.log_message(session_id="chat-1", role="user", content="hi")  # user_id from the JWT

Any object with ``.rpc(name, params).execute()`` returning something with
``.data`` works (a supabase ``Client`` or a ``postgrest.SyncPostgrestClient``).
Arguments left at ``None`` are not sent. Nothing is retried: supabase clients
do not retry a POST either, and ``client_message_id`` makes your own retry safe.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import _calls
from .errors import ConnectionFailed, from_postgrest, not_installed

try:
    from httpx import TransportError
    from postgrest.exceptions import APIError
except ImportError:  # supabase not installed: only duck-typed clients
    class APIError(Exception):  # type: ignore[no-redef]
        """Placeholder: never raised."""

    class TransportError(Exception):  # type: ignore[no-redef]
        """Placeholder: never raised."""


class _Response(Protocol):
    data: Any


class _Request(Protocol):
    def execute(self) -> _Response: ...


class RpcClient(Protocol):
    """What ``SupabaseSessionLog`` needs from a client."""

    def rpc(self, fn: str, params: dict[str, Any], /) -> Any: ...


class SupabaseSessionLog(_calls.SyncAPI):
    """The sessionlog API over PostgREST: ``SupabaseSessionLog(client)``."""

    def __init__(self, client: RpcClient) -> None:
        self._client = client

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        call = _calls.CALLS[name]
        request: _Request = self._client.rpc(name, _calls.json_params(call, args))
        try:
            response = request.execute()
        except APIError as exc:
            if getattr(exc, "code", None) == "PGRST202":
                # PostgREST matches a function by its argument names, and ours
                # are right: the function is not there (or not in the schema
                # cache yet: NOTIFY pgrst, 'reload schema').
                raise not_installed(str(exc.message), "PGRST202", exc.details) from exc
            raise from_postgrest(exc) from exc
        except TransportError as exc:  # PostgREST unreachable
            raise ConnectionFailed(str(exc) or type(exc).__name__) from exc
        return _calls.convert(call, response.data)
