"""sessionlog: log chat, AI and behavioral-auth sessions in PostgreSQL."""

from sessionlog.migrations import migrate, rollback

__all__ = ["migrate", "rollback"]
