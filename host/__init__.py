"""tensornic host runtime."""
from .errors import *  # noqa: F401,F403
