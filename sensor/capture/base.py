"""What every capture source hands the pipeline: frames, loss counters and warnings (DESIGN.md §1).

A source is either a capture file (:mod:`sensor.capture.file`) or a live SPAN interface
(:mod:`sensor.capture.live`). Both yield :class:`sensor.records.Frame` tuples and count every loss
(DESIGN.md: "every loss is counted") in one :class:`CaptureCounters`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from sensor.records import Frame


@dataclass(slots=True)
class CaptureCounters:
    """Mutable per-source counters; the runtime sums them over sources.

    ``packets``/``bytes`` count frames handed out (for a live source: frames received from the
    kernel, including those then dropped because the queue was full) and their captured bytes.
    """

    packets: int = 0
    bytes: int = 0
    kernel_drops: int = 0  # live: frames the kernel dropped before we read them (PACKET_STATISTICS)
    queue_drops: int = 0  # live: frames dropped because the pipeline did not keep up
    truncated_records: int = 0  # file: last record cut short (file ends mid-record)
    corrupt_records: int = 0  # file: record with an impossible length; reading stops there
    records_over_snaplen: int = 0  # file: caplen above the declared snaplen (accepted, but odd)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Source(ABC):
    """A stream of captured frames. ``frames()`` is a generator; ``close()`` releases the handle."""

    counters: CaptureCounters
    warnings: list[str]

    def __init__(self) -> None:
        self.counters = CaptureCounters()
        self.warnings = []

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames in capture order."""

    def close(self) -> None:  # noqa: B027 - sources without a handle need nothing
        """Release the underlying file or socket; idempotent."""
