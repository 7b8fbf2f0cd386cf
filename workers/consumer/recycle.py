"""When a consumer hands its slot to a fresh fork (Celery's max-tasks / max-memory per child).

A consumer's private memory grows as it works: a cache of many small Python objects gets its
pages copied as reference counts change, and handlers may leak. Forked again from the preloaded
cache, the replacement starts fully shared, at the cost of one fork and no reload. The consumer
drains first (finishes and acks what it holds), then exits with `EXIT_RECYCLE`.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_RECYCLE = 76  # drained after a limit: the supervisor forks a fresh consumer for the slot


@dataclass(frozen=True)
class Recycling:
    max_messages: int | None
    max_private_bytes: int | None

    @property
    def watches_memory(self) -> bool:
        return self.max_private_bytes is not None

    def takes_last(self, taken: int) -> bool:
        """Whether the `taken`-th delivery is the last this consumer may take: it stops taking
        more (basic.cancel) before that delivery is settled, since the ack frees a prefetch
        slot the broker would fill at once."""
        return self.max_messages is not None and taken >= self.max_messages

    def reason(self, handled: int, private_bytes: int | None) -> str | None:
        """Why the consumer should be recycled now, or None."""
        if self.max_messages is not None and handled >= self.max_messages:
            return f"handled {handled} messages (limit {self.max_messages})"
        if (self.max_private_bytes is not None and private_bytes is not None
                and private_bytes > self.max_private_bytes):
            return (f"private memory {private_bytes / 1048576:.0f} MiB over the limit of "
                    f"{self.max_private_bytes / 1048576:.0f} MiB")
        return None
