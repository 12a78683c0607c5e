# The memoising HPACK coders (laurelin.protocols.http2_hpack) against hpack itself: over long
# random runs of header lists that repeat, change, grow the dynamic table, evict from it and
# resize it, MemoEncoder's output is byte for byte hpack's Encoder's, and MemoDecoder's header
# lists are hpack's Decoder's; errors (oversized lists, bad indexes) are raised just the same.
from __future__ import annotations

import random

import pytest
from h2.errors import ErrorCodes
from hpack import Decoder, Encoder, HPACKDecodingError, NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError

from laurelin.protocols.http2_hpack import CompressionError, MemoDecoder, MemoEncoder

Headers = list[tuple[bytes, bytes]]


def header_lists(rng: random.Random, count: int) -> list[Headers]:
    """Header lists drawn from a small pool (so blocks repeat) with fresh values now and then
    (so the table grows and evicts)."""
    pool: list[Headers] = [
        [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"laurelin")],
        [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"a")],
        [(b":status", b"404"), (b"content-length", b"9"), (b"x-big", b"v" * 300)],
        [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"user-agent", b"test")],
    ]
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.7:
            out.append(list(rng.choice(pool)))
        else:
            fresh = [(b"x-%d" % rng.randrange(50), b"%d" % rng.randrange(10**6))]
            if roll < 0.75:
                fresh.append((b"x-large", b"z" * rng.randrange(100, 3000)))
            out.append(rng.choice(pool) + fresh)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_encoder_output_is_hpacks(seed: int) -> None:
    rng = random.Random(seed)
    plain, memo = Encoder(), MemoEncoder()
    for step, headers in enumerate(header_lists(rng, 3000)):
        if step % 500 == 499:
            size = rng.choice([0, 256, 1024, 4096])
            plain.header_table_size = size
            memo.header_table_size = size
        assert memo.encode(headers) == plain.encode(headers), f"step {step}"
    assert list(memo.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries)


def test_encoder_never_indexed_fields_are_not_confused_with_plain_ones() -> None:
    plain, memo = Encoder(), MemoEncoder()
    fields = [(b"authorization", b"secret")]
    secret = [NeverIndexedHeaderTuple(b"authorization", b"secret")]
    for headers in (fields, fields, secret, secret, fields):
        assert memo.encode(headers) == plain.encode(headers)


@pytest.mark.parametrize("seed", range(8))
def test_decoder_result_is_hpacks(seed: int) -> None:
    rng = random.Random(seed)
    encoder, plain, memo = Encoder(), Decoder(), MemoDecoder()
    for step, headers in enumerate(header_lists(rng, 3000)):
        if step % 500 == 499:
            encoder.header_table_size = rng.choice([0, 256, 1024, 4096])
        block = encoder.encode(headers)
        assert memo.decode(block, raw=True) == plain.decode(block, raw=True), f"step {step}"
    assert list(memo.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries)


def test_decoder_repeats_its_errors() -> None:
    encoder = Encoder()
    big = encoder.encode([(b"x", b"y" * 200)] * 10)
    memo = MemoDecoder(max_header_list_size=1000)
    for _ in range(2):
        with pytest.raises(OversizedHeaderListError):
            memo.decode(big, raw=True)
    bad_index = b"\xff\x7f"  # an index far beyond any table
    for _ in range(2):
        # RFC 9113 4.3: a COMPRESSION_ERROR for the connection, from hpack's own error.
        with pytest.raises(CompressionError) as caught:
            memo.decode(bad_index, raw=True)
        assert caught.value.error_code == ErrorCodes.COMPRESSION_ERROR
        assert isinstance(caught.value.__cause__, HPACKDecodingError)


def test_decoder_limit_change_forgets_what_it_remembered() -> None:
    block = Encoder().encode([(b"x-a", b"b" * 100)] * 3)
    memo = MemoDecoder(max_header_list_size=65536)
    assert len(memo.decode(block, raw=True)) == 3
    assert len(memo.decode(block, raw=True)) == 3
    memo.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        memo.decode(block, raw=True)
