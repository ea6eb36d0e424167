"""The campaign database: schema, reads and bulk writes. It records decisions; it makes none.

Only the manager side writes here; workers on compute nodes never touch it.
"""

from campaigns.store.pages import Pages
from campaigns.store.reads import Reads
from campaigns.store.schema import SCHEMA_VERSION
from campaigns.store.writes import Writes


class Store(Reads, Pages, Writes):
    """One campaign's database: `Reads` and `Pages` query, `Writes` changes.

    `Store(url, read_only=True)` opens it so that no write can succeed.
    """


__all__ = ["SCHEMA_VERSION", "Store"]
