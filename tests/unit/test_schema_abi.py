"""The compiled module's record structs must match netwarden/records/schema.py, and say so when not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netwarden.errors import SchemaError
from netwarden.records import schema

ROOT = Path(__file__).resolve().parents[2]

fastpath = pytest.importorskip("sensor._fastpath", reason="compiled module not built (make build)")
if not hasattr(fastpath, "check_record_layouts"):
    pytest.skip("compiled module has no layout check", allow_module_level=True)


def _altered(dtype: np.dtype, field: str, fmt: object) -> np.dtype:
    """The dtype with one field's format replaced, laid out again with align=True."""
    fields = [(n, fmt if n == field else dtype.fields[n][0]) for n in dtype.names]
    return np.dtype(fields, align=True)


def test_layouts_match_the_schema() -> None:
    fastpath.check_record_layouts()
    for name, (size, fields) in fastpath.c_layouts().items():
        dt = schema.RECORD_TYPES[name]
        assert size == dt.itemsize
        assert set(fields) == set(dt.names)
        assert {f: off for f, (off, _) in fields.items()} == {f: dt.fields[f][1] for f in dt.names}


@pytest.mark.parametrize(
    "record, field, fmt",
    [
        ("flow", "orig_pkts", "<u4"),  # shifts every later offset
        ("flow", "vlan", "<u4"),
        ("flow", "dns_qname", "S60"),  # same offsets and itemsize: only the field size differs
        ("arp", "op", "<u4"),
        ("pktsum", "src", ("u1", (4,))),
    ],
)
def test_altered_dtype_is_refused(
    monkeypatch: pytest.MonkeyPatch, record: str, field: str, fmt: object
) -> None:
    monkeypatch.setitem(
        schema.RECORD_TYPES, record, _altered(schema.RECORD_TYPES[record], field, fmt)
    )
    with pytest.raises(SchemaError, match=record):
        fastpath.check_record_layouts()


def test_swapped_fields_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    dt = schema.ARP_DTYPE
    names = list(dt.names)
    i, j = names.index("sender_mac"), names.index("target_mac")
    names[i], names[j] = names[j], names[i]
    swapped = np.dtype([(n, dt.fields[n][0]) for n in names], align=True)
    monkeypatch.setitem(schema.RECORD_TYPES, "arp", swapped)
    with pytest.raises(SchemaError, match="arp"):
        fastpath.check_record_layouts()


def test_added_dtype_field_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    dt = schema.FLOW_DTYPE
    grown = np.dtype([(n, dt.fields[n][0]) for n in dt.names] + [("extra", "<u8")], align=True)
    monkeypatch.setitem(schema.RECORD_TYPES, "flow", grown)
    with pytest.raises(SchemaError, match="flow"):
        fastpath.check_record_layouts()


def test_dtype_field_without_c_counterpart_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    dt = schema.PKTSUM_DTYPE
    renamed = np.dtype(
        [("sport2" if n == "sport" else n, dt.fields[n][0]) for n in dt.names], align=True
    )
    monkeypatch.setitem(schema.RECORD_TYPES, "pktsum", renamed)
    with pytest.raises(SchemaError, match="sport"):
        fastpath.check_record_layouts()


def test_import_refuses_a_mismatched_schema() -> None:
    """The check runs when the module loads: with a dtype altered before the import, the
    import itself raises SchemaError (run in a fresh interpreter, whose import is real)."""
    code = (
        "import numpy as np\n"
        "from netwarden.records import schema\n"
        "dt = schema.FLOW_DTYPE\n"
        "schema.RECORD_TYPES['flow'] = np.dtype(\n"
        "    [(n, '<u4' if n == 'orig_pkts' else dt.fields[n][0]) for n in dt.names], align=True)\n"
        "from netwarden.errors import SchemaError\n"
        "try:\n"
        "    import sensor._fastpath\n"
        "except SchemaError as exc:\n"
        "    print('refused:', exc)\n"
        "else:\n"
        "    print('loaded')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.startswith("refused: flow"), out
