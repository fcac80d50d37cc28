"""The chat server: one thread per connection on socketserver.

``config`` (what it can be told), ``server`` (listener, admission, sessions,
presence, shutdown), ``handler`` (one connection's read loop and batches),
``ops`` (one function per request), ``delivery`` (acknowledge after the
commit), ``netio`` (outboxes that never block, TLS over memory BIOs). The
command line is ``chat.serve``.
"""
from .config import ServerConfig
from .handler import ChatHandler
from .server import ChatServer

__all__ = ["ChatHandler", "ChatServer", "ServerConfig"]
