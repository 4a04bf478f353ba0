"""rbda.alerts.avro_decode: the compiled projected decoder gives what fastavro gives, and never more than the bytes."""

from __future__ import annotations

import io
import json
import random

import fastavro
import pytest

from rbda.alerts.avro_decode import CorruptRecord, ProjectedDecoder, Unsupported
from rbda.alerts.packets import WANTED, AlertReader, AvroSchemas, projected_schema

#: Every Avro type: nested and named records, enums, fixed, maps, arrays of records, unions of 3 branches and of
#: a string (a pattern's union), named references, and a union of 70 branches (past a pattern's 64).
EVERY_TYPE = {"type": "record", "name": "Top", "namespace": "test", "fields": [
    {"name": "id", "type": "long"},
    {"name": "flag", "type": "boolean"},
    {"name": "small", "type": "int"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": ["null", "double"]},
    {"name": "name", "type": ["null", "string"]},
    {"name": "blob", "type": "bytes"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 5}},
    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
        {"name": "a", "type": "long"}, {"name": "s", "type": "string"},
        {"name": "tags", "type": {"type": "map", "values": ["null", "int", "string"]}}]}},
    {"name": "history", "type": ["null", {"type": "array", "items": "Inner"}]},
    {"name": "again", "type": ["null", "Inner"]},
    {"name": "codes", "type": {"type": "array", "items": "Kind"}},
    {"name": "wide", "type": ["null", *({"type": "fixed", "name": f"F{i}", "size": i % 3 + 1} for i in range(69))]},
    {"name": "last", "type": "Hash"}]}


def encode(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def fastavro_decode(schema: dict, raw: bytes, wanted: dict | None) -> object:
    """fastavro's reading with the projected reader schema (the projections here keep the named types' definitions)."""
    projected = None if wanted is None else fastavro.parse_schema(projected_schema(schema, wanted))
    return fastavro.schemaless_reader(io.BytesIO(raw), fastavro.parse_schema(schema), projected)


def generated(schema: dict, count: int, seed: int) -> list[dict]:
    random.seed(seed)  # fastavro.utils draws from the random module
    from fastavro.utils import generate_many

    records = list(generate_many(schema, count))
    for i, record in enumerate(records):  # strings past the 127 bytes a whole-plan pattern matches, now and then
        if i % 3 == 0:
            record["inner"]["s"] = "x" * (250 + 7 * i)
            record["name"] = "é" * (100 + i)
            if record["history"]:  # an array item's pattern fails on it: that item is skipped step by step
                record["history"][0]["s"] = "y" * 128
    return records


@pytest.mark.parametrize("wanted", [None, {"id": None, "inner": {"s": None}, "again": {"s": None}, "hash": None},
                                    {"blob": None}, {"inner": None, "history": None, "wide": None}, {}],
                         ids=["every field", "a projection", "one field", "arrays and a wide union", "no field"])
def test_generated_records_of_every_type_decode_as_fastavro_decodes(wanted):
    decoder = ProjectedDecoder(fastavro.parse_schema(EVERY_TYPE), wanted)
    for record in generated(EVERY_TYPE, 60, seed=3):
        raw = encode(EVERY_TYPE, record)
        got, end = decoder.decode(raw)
        assert got == fastavro_decode(EVERY_TYPE, raw, wanted)
        assert end == len(raw)


def test_fields_of_one_named_type_are_read_each_for_its_own_wanted_fields():
    """A projected reader schema defines a named record once, so fastavro reads every field of that type with the
    first field's projection; the compiled decoder reads each field's own."""
    record = generated(EVERY_TYPE, 1, seed=6)[0]
    got, _ = ProjectedDecoder(fastavro.parse_schema(EVERY_TYPE), {"inner": {"s": None}, "again": {"a": None}}).decode(
        encode(EVERY_TYPE, record))
    assert got == {"inner": {"s": record["inner"]["s"]}, "again": None if record["again"] is None
                   else {"a": record["again"]["a"]}}


def test_records_follow_each_other_in_one_block():
    decoder = ProjectedDecoder(fastavro.parse_schema(EVERY_TYPE), {"id": None})
    records = generated(EVERY_TYPE, 10, seed=4)
    block = b"".join(encode(EVERY_TYPE, r) for r in records)
    pos, ids = 0, []
    for _ in records:
        record, pos = decoder.decode(block, pos)
        ids.append(record["id"])
    assert ids == [r["id"] for r in records] and pos == len(block)


def _zigzag(n: int) -> bytes:
    code, out = (n << 1) ^ (n >> 63), bytearray()
    while code >= 0x80:
        out.append((code & 0x7F) | 0x80)
        code >>= 7
    out.append(code)
    return bytes(out)


def test_blocks_with_a_negative_count_and_their_size_are_skipped_and_read():
    """The Avro spec lets a writer give a block as a negative count then its byte size (fastavro writes positive
    counts only): read and skipped as fastavro reads them."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "string"}}, {"name": "after", "type": "long"}]}
    items = [b"ab", b"cde"]
    body = b"".join(_zigzag(len(s)) + s for s in items)
    raw = _zigzag(-2) + _zigzag(len(body)) + body + _zigzag(1) + _zigzag(1) + b"z" + _zigzag(0) + _zigzag(42)
    expected = fastavro.schemaless_reader(io.BytesIO(raw), fastavro.parse_schema(schema))
    assert expected == {"xs": ["ab", "cde", "z"], "after": 42}
    parsed = fastavro.parse_schema(schema)
    assert ProjectedDecoder(parsed).decode(raw) == (expected, len(raw))
    assert ProjectedDecoder(parsed, {"after": None}).decode(raw) == ({"after": 42}, len(raw))


def test_skipped_array_items_past_their_pattern_are_skipped_step_by_step():
    """Items of flat records (no blocks) are skipped by one pattern, which matches strings of up to 127
    bytes; an item with a longer one is skipped step by step, and the items after it by the pattern again."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "xs", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
            {"name": "n", "type": "long"}, {"name": "s", "type": "string"}, {"name": "f", "type": "float"}]}}},
        {"name": "after", "type": "long"}]}
    parsed = fastavro.parse_schema(schema)
    decoder = ProjectedDecoder(parsed, {"after": None})
    for lengths in ([3, 200, 5], [128, 127, 0, 300], [1] * 20):
        record = {"xs": [{"n": -i, "s": "s" * n, "f": 0.5} for i, n in enumerate(lengths)], "after": 42}
        raw = encode(schema, record)
        assert decoder.decode(raw) == ({"after": 42}, len(raw)), lengths


def _every_truncation_and_corruption_is_a_corrupt_record(decoder: ProjectedDecoder, raw: bytes, stride: int) -> None:
    cuts = sorted(set(range(0, len(raw), stride)) | set(range(max(len(raw) - 300, 0), len(raw))))
    for cut in cuts:
        with pytest.raises(CorruptRecord):
            decoder.decode(raw[:cut])
    rng = random.Random(7)
    for _ in range(300):  # damaged bytes: a record (of other values) or a CorruptRecord, never anything else
        damaged = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(raw))] = rng.randrange(256)
        try:
            _, end = decoder.decode(bytes(damaged))
        except CorruptRecord:
            continue
        assert end <= len(raw)


@pytest.mark.parametrize("wanted", [None, {"id": None, "hash": None}], ids=["every field", "a projection"])
def test_truncated_or_damaged_generated_records_are_corrupt_records(wanted):
    decoder = ProjectedDecoder(fastavro.parse_schema(EVERY_TYPE), wanted)
    for record in generated(EVERY_TYPE, 3, seed=5):
        _every_truncation_and_corruption_is_a_corrupt_record(decoder, encode(EVERY_TYPE, record), stride=1)


def test_a_wanted_logical_type_is_left_to_fastavro(tmp_path):
    """fastavro converts logical types (a timestamp to a datetime); the compiled decoder does not compile a wanted
    one, and the packet reader decodes such a schema with fastavro instead (the same records)."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}}, {"name": "n", "type": "long"}]}
    with pytest.raises(Unsupported, match="timestamp-millis"):
        ProjectedDecoder(fastavro.parse_schema(schema), {"when": None})
    skipped = ProjectedDecoder(fastavro.parse_schema(schema), {"n": None})  # skipped, it is a long
    assert skipped.decode(encode(schema, {"when": 5, "n": 9})) == ({"n": 9}, 2)
    entry = AvroSchemas({"when": None}).get(json.dumps(schema).encode())
    assert entry.decoder is None
    record, _ = entry.decode(encode(schema, {"when": 5, "n": 9}))
    assert record["when"].year == 1970


def _real_records(real_samples):
    """(writer schema, record bytes) of every real packet: ZTF's container files, Rubin's Confluent record,
    DECam's container."""
    from rbda.alerts.packets import _HEADER_SCHEMA, _decompress, _read_long

    out = []
    for path in sorted((real_samples / "ztf_avro").glob("*.avro")) + [real_samples / "decam_avro" /
                                                                       "desirt_alert.avro"]:
        with open(path, "rb") as fh:
            header = fastavro.schemaless_reader(fh, _HEADER_SCHEMA)
            _read_long(fh)
            size = _read_long(fh)
            raw = _decompress(fh.read(size), header["meta"].get("avro.codec", b"null").decode())
        out.append((path, AvroSchemas().get(header["meta"]["avro.schema"]).parsed, raw))
    rubin = real_samples / "lsst_avro" / "7912941781254298.avro"
    reader = AlertReader([rubin])
    layout = reader.confluent_layout(900)
    out.append((rubin, reader.schemas.get_file(layout.schema.path(900)).parsed, rubin.read_bytes()[5:]))
    return out


def test_real_ztf_rubin_and_decam_packets_decode_as_fastavro_decodes(real_samples):
    records = _real_records(real_samples)
    assert len(records) == 22
    for path, parsed, raw in records:
        for wanted in (WANTED, None):
            decoder = ProjectedDecoder(parsed, wanted)
            projected = None if wanted is None else fastavro.parse_schema(projected_schema(parsed, wanted))
            expected = fastavro.schemaless_reader(io.BytesIO(raw), parsed, projected)
            got, end = decoder.decode(raw)
            assert repr(got) == repr(expected) and end == len(raw), (path, wanted is None)  # repr: NaN equals NaN


def test_truncated_or_damaged_real_packets_are_corrupt_records(real_samples):
    records = _real_records(real_samples)
    for _, parsed, raw in (records[0], records[-2], records[-1]):  # a ZTF, the DECam and the Rubin packet
        _every_truncation_and_corruption_is_a_corrupt_record(ProjectedDecoder(parsed, WANTED), raw, stride=101)


def test_a_fixed_type_too_large_for_a_pattern_is_left_to_fastavro():
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "big", "type": {"type": "fixed", "name": "Big", "size": 2**17}}, {"name": "n", "type": "long"}]}
    with pytest.raises(Unsupported, match="fixed type of 131072 bytes"):
        ProjectedDecoder(fastavro.parse_schema(schema), {"n": None})
    entry = AvroSchemas({"n": None}).get(json.dumps(schema).encode())
    assert entry.decoder is None
    assert entry.decode(encode(schema, {"big": b"\x01" * 2**17, "n": 3})) == ({"n": 3}, 2**17 + 1)
