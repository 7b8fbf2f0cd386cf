"""A job store's id and the instance it belongs to.

The id names the store's replies queue on the broker (`rpcfleet.replies.{id}`), shared by every
gateway of that store. A copy of the store (a copied state directory, a database restored from a
dump beside the original) carries the same id: on a shared broker the two would take and drop
each other's replies. So each store keeps, beside its id, the identity of the instance the id was
made in (the SQLite file's inode; the PostgreSQL cluster's system identifier and the database's
oid), and a gateway refuses to start on a store whose instance is another one.
"""

from __future__ import annotations


class StoreCopied(RuntimeError):
    """The store carries the id of another instance: refusing to start, saying what to do."""

    def __init__(self, where: str, store_id: str, recorded: str, current: str,
                 new_id: str, adopt: str) -> None:
        super().__init__(
            f"the job store {where} was copied from another store: it carries id {store_id} "
            f"made in instance {recorded}, and this is instance {current}. Two stores with one "
            f"id take each other's job replies on a shared broker. If it is a copy, {new_id} "
            f"to give it an id of its own; if it was moved and the original is gone for good, "
            f"{adopt} to keep the id")


def check_instance(where: str, store_id: str, recorded: str, current: str, *, new_id: str,
                   adopt: str) -> None:
    """Raise StoreCopied unless the id was made in this instance."""
    if recorded != current:
        raise StoreCopied(where, store_id, recorded, current, new_id, adopt)
