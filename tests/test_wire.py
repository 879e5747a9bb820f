import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto_rewrite.wire import LEN, VARINT, WireFormatError, encode_varint, iter_fields, len_header, read_varint


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(value):
    data = encode_varint(value)
    assert read_varint(data, 0, len(data)) == (value, len(data))


def test_iter_fields_reports_record_and_value_ranges():
    payload = b"abc"
    data = len_header(3, len(payload)) + payload + encode_varint((1 << 3) | VARINT) + encode_varint(300)
    first, second = list(iter_fields(data))
    assert (first.number, first.wire_type, first.start) == (3, LEN, 0)
    assert data[first.value_start : first.end] == payload
    assert (second.number, second.wire_type) == (1, VARINT)
    assert read_varint(data, second.value_start, len(data))[0] == 300


@pytest.mark.parametrize(
    "data, message",
    [
        (len_header(3, 10) + b"abc", "runs past the end"),
        (bytes([0x80, 0x80]), "truncated varint"),
        (bytes([0x0B]), "unsupported wire type 3"),
        (bytes([0x00]), "field number 0"),
        (bytes([0xFF] * 11), "longer than 10 bytes"),
    ],
)
def test_bad_bytes_raise_wire_format_error(data, message):
    with pytest.raises(WireFormatError, match=message):
        list(iter_fields(data))
