"""Many short strings in one buffer, for the per-file lists of a day of 100,000 files.

A Python ``str`` costs about 50 bytes of header beside its text; here a string costs its UTF-8 bytes plus an
8-byte end offset. UTF-8 keeps code point order, so comparing encoded bytes orders the strings exactly as
``str`` does (and as S3 lists keys), and a sorted ``PackedStrings`` is searched by bisection on the bytes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

__all__ = ["PackedStrings"]


class PackedStrings:
    """An append-only list of strings held as one UTF-8 buffer and the offset where each one ends."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._blob = bytearray()
        self._ends = array("q")
        for text in texts:
            self.append(text)

    def append(self, text: str) -> None:
        self._blob += text.encode("utf-8")
        self._ends.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._ends)

    def _encoded(self, index: int) -> bytes:
        start = self._ends[index - 1] if index else 0
        return bytes(self._blob[start : self._ends[index]])

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self._ends):
            raise IndexError(index)
        return self._encoded(index).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        start = 0
        for end in self._ends:
            yield self._blob[start:end].decode("utf-8")
            start = end

    def isSorted(self) -> bool:
        return all(self._encoded(index - 1) <= self._encoded(index) for index in range(1, len(self._ends)))

    def sortOrder(self) -> list[int]:
        """The positions of the strings in sorted order (for reordering parallel lists alike)."""
        return sorted(range(len(self._ends)), key=self._encoded)

    def reordered(self, order: Iterable[int]) -> PackedStrings:
        result = PackedStrings()
        for index in order:
            result._blob += self._encoded(index)
            result._ends.append(len(result._blob))
        return result

    def find(self, text: str) -> int | None:
        """The position of ``text`` in these strings, which must be sorted; None when it is not among them."""
        target = text.encode("utf-8", "surrogatepass")  # a name no S3 key can have is simply not found
        blob, ends = self._blob, self._ends
        low, high = 0, len(ends)
        while low < high:
            middle = (low + high) // 2
            if blob[ends[middle - 1] if middle else 0 : ends[middle]] < target:
                low = middle + 1
            else:
                high = middle
        return low if low < len(ends) and self._encoded(low) == target else None
