# laurelin.protocols.tls_reads — reading from TLS transports into a buffer we own.
#
# A TLS transport hands a plain protocol its decrypted bytes in a new bytes object, and uvloop
# asks OpenSSL for the largest read it allows (256 KiB) every time: above glibc's mmap
# threshold, that is an mmap, an mremap, an munmap and a page fault per read, that is per
# request (seen with strace: 6 system calls per keep-alive request, 3 with this). Given a
# BufferedProtocol instead, the TLS layer decrypts into the buffer we return. `TLSReads` makes
# one of any of our connection classes; the TLS variants mix it in after the connection class,
# so that their own data_received/eof_received stay in force. uvloop takes a protocol as
# buffered only when it is not an asyncio.Protocol, which is why the connection classes derive
# from asyncio.BaseProtocol.
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

# One buffer for every TLS connection of the process: buffer_updated() takes the bytes out at
# once, so no connection holds it between reads. Made on first use, not at import.
_BUFFER_SIZE = 65536
_buffer = memoryview(b"")


class TLSReads(asyncio.BufferedProtocol):
    """get_buffer()/buffer_updated() on top of a connection's data_received()."""

    __slots__ = ()

    if TYPE_CHECKING:

        def data_received(self, data: bytes) -> None: ...  # the connection's own

    def get_buffer(self, sizehint: int) -> memoryview:
        global _buffer
        if not _buffer:
            _buffer = memoryview(bytearray(_BUFFER_SIZE))
        return _buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_buffer[:nbytes].tobytes())
