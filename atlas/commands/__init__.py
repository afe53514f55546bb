"""The command table: one module per family registers its handlers with @command.

Importing this package imports every family; `session.build_table()` then indexes them.
"""

from atlas.commands import (  # noqa: F401 - imported for their @command registrations
    connection,
    hashes,
    keys,
    lists,
    pubsub,
    server,
    sets,
    strings,
    throttle,
    transactions,
    zsets,
)
from atlas.commands.base import REGISTRY
from atlas.persistence import commands as persistence_commands  # noqa: F401 - SAVE, BGSAVE, ...

__all__ = ["REGISTRY"]
