"""``python -m chat.tui`` (and ``python -m chat.client``): the same as ``chat-client``."""
import sys

from .app import main

sys.exit(main())
