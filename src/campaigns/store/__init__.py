"""The campaign database: schema, reads and bulk writes. It records decisions; it makes none.

Only the manager side writes here; workers on compute nodes never touch it.
"""

from campaigns.store.reads import Reads
from campaigns.store.schema import SCHEMA_VERSION
from campaigns.store.writes import Writes


class Store(Reads, Writes):
    """One campaign's database: `Reads` queries, `Writes` changes."""


__all__ = ["SCHEMA_VERSION", "Store"]
