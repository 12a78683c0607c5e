# laurelin.protocols.http2_hpack — HPACK (RFC 7541) with memory of header blocks already coded.
#
# hpack codes each header field in Python, and a hello-world request spends about a quarter of
# its time there. Yet clients send the same block again and again (every field indexed), and a
# server answers with the same few fields. Coding is a pure function of the input and the
# dynamic table, so when coding a block leaves the table as it was, the result holds for as long
# as the table does not change: these subclasses remember such results, keyed by the input and
# valid for one table version (every insertion, eviction or resize makes a new version). Output
# is byte for byte what hpack would produce (tests/test_http2_hpack.py checks it against hpack).
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hpack import Decoder, Encoder
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hpack.table import HeaderTable

# Remembered blocks per coder, and the largest block remembered.
MEMO_ENTRIES = 64
MEMO_BLOCK_MAX = 1024


class VersionedTable(HeaderTable):
    """hpack's dynamic table, with a version that changes whenever its content may have."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.version += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class MemoEncoder(Encoder):
    """An hpack Encoder that reuses the block of a header list it coded without changing the
    table, while the table stays as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: VersionedTable = VersionedTable()
        self._memo: dict[tuple[Any, ...], bytes] = {}
        self._memo_version = 0

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        table = self.header_table
        if table.version != self._memo_version:
            self._memo.clear()
            self._memo_version = table.version
        key = tuple(headers)
        # Only plain (name, value) tuples: hpack codes its NeverIndexedHeaderTuple differently
        # from an equal plain tuple. A pending table-size update is never remembered.
        plain = all(type(field) is tuple for field in key) and not table.resized and huffman
        if plain:
            block = self._memo.get(key)
            if block is not None:
                return block
        block = super().encode(key, huffman)
        if plain and table.version == self._memo_version and len(block) <= MEMO_BLOCK_MAX:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            self._memo[key] = block
        return block


class CompressionError(ProtocolError):
    """A header block that cannot be decoded."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class MemoDecoder(Decoder):
    """An hpack Decoder that reuses the header list of a block it decoded without changing the
    table, while the table (and the header list limit) stay as they are."""

    def __init__(self, max_header_list_size: int = 65536) -> None:
        super().__init__(max_header_list_size)
        self.header_table: VersionedTable = VersionedTable()
        self.max_allowed_table_size = self.header_table.maxsize
        self._memo: dict[bytes, tuple[Any, ...]] = {}
        self._memo_version = 0
        self._memo_limits = (0, 0)

    def decode(self, data: bytes, raw: bool = False) -> Any:
        table = self.header_table
        limits = (self.max_header_list_size, self.max_allowed_table_size)
        if table.version != self._memo_version or limits != self._memo_limits:
            self._memo.clear()
            self._memo_version = table.version
            self._memo_limits = limits
        if raw:
            key = bytes(data)
            found = self._memo.get(key)
            if found is not None:
                return list(found)
        try:
            headers = super().decode(data, raw)
        except OversizedHeaderListError:
            raise  # h2's: an HPACK bomb, refused as such
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            # RFC 9113 4.3: a block that cannot be decoded ends the connection with
            # COMPRESSION_ERROR (h2 would say PROTOCOL_ERROR): our tables no longer agree.
            raise CompressionError(f"Error decoding header block: {exc}") from exc
        if raw and table.version == self._memo_version and len(key) <= MEMO_BLOCK_MAX:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            self._memo[key] = tuple(headers)
        return headers
