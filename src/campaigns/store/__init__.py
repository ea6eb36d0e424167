"""The runs database: schema, migrations, reads and bulk writes. It records decisions; it
makes none.

Only the manager side writes here; workers on compute nodes never touch it.
"""

from campaigns.store.leases import Leases
from campaigns.store.lifecycle import Lifecycle
from campaigns.store.pages import Pages
from campaigns.store.qa_results import QAResults
from campaigns.store.reads import Reads
from campaigns.store.schema import SCHEMA_REVISION
from campaigns.store.urls import shown as shown_url
from campaigns.store.writes import Writes


class Store(Reads, Pages, Writes, Lifecycle, Leases, QAResults):
    """One campaign (found by its slug) in a runs database: `Reads` and `Pages` query, the
    rest change. `Store(url, slug, read_only=True)` opens it so that no write can succeed."""


__all__ = ["SCHEMA_REVISION", "Store", "shown_url"]
