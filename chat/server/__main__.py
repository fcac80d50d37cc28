"""``python -m chat.server``: the same as ``chat-server``."""
import sys

from ..serve import main

sys.exit(main())
