"""The IRC gateway: irssi, WeeChat and bots on the same server as the native clients.

``protocol`` is the sans-IO layer (parsing, formatting, line buffering, CAP and SASL
helpers) and ``numerics`` the table of replies it uses; neither touches a socket.
"""
