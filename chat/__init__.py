"""parallel-chat: a self-hosted terminal chat system (server, client library, curses client)."""

__version__ = "0.1.0"
