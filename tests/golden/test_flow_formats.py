"""``netwarden flows --format zeek|csv|json|parquet`` and ``netwarden.read_flows`` on corpus
captures: every format carries the rows of Zeek's own conn.log (the oracle), DuckDB reads the
Parquet output, streaming batches make the same table, and bad input leaves no file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import netwarden
from netwarden.errors import CaptureError, ConfigError
from netwarden.records import arrow
from sensor.export import textcols
from tests.conftest import REPO, c_backend_missing
from tests.golden.test_zeek_oracle import read_conn_log

FORMATS = ("zeek", "csv", "json", "parquet")
#: Tunnelled flows (parent uids), IPv4, TCP/UDP/ICMP: and a capture with many flows.
TRACES = ("gre_sample", "llc_many_flows")


def flows_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "netwarden", "flows", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False
    )


def zeek_rows(trace: Path) -> list[dict[str, str]]:
    return read_conn_log((trace.parent / "conn.log").read_text())


@pytest.fixture(scope="module")
def outputs(zeek_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each format written with -o, once per trace: {f"{trace}.{format}": path}."""
    out = tmp_path_factory.mktemp("formats")
    paths = {}
    for name in TRACES:
        trace = zeek_corpus / name / "trace.pcap"
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            proc = flows_cli("--format", fmt, "-o", str(path), str(trace))
            assert proc.returncode == 0 and proc.stderr == "", proc.stderr
            paths[f"{name}.{fmt}"] = path
    return paths


def _key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in ("uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto"))


@pytest.mark.parametrize("name", TRACES)
def test_every_format_has_the_rows_of_zeeks_conn_log(
    zeek_corpus: Path, outputs: dict[str, Path], name: str
) -> None:
    expected = zeek_rows(zeek_corpus / name / "trace.pcap")
    ours = read_conn_log(outputs[f"{name}.zeek"].read_text())
    assert len(ours) == len(expected) > 0
    want = sorted(
        _key({**z, "orig_h": z["id.orig_h"], "orig_p": z["id.orig_p"],
              "resp_h": z["id.resp_h"], "resp_p": z["id.resp_p"]})
        for z in ours
    )  # fmt: skip
    with open(outputs[f"{name}.csv"], newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    json_rows = [json.loads(ln) for ln in outputs[f"{name}.json"].read_text().splitlines()]
    parquet_rows = pq.read_table(outputs[f"{name}.parquet"]).to_pylist()
    for rows in (csv_rows, json_rows, parquet_rows):
        assert sorted(_key(r) for r in rows) == want
    # Counters agree with the Zeek output, per uid, in every format.
    by_uid = {z["uid"]: z for z in ours}
    for rows in (csv_rows, json_rows, parquet_rows):
        for r in rows:
            z = by_uid[r["uid"]]
            assert (str(r["orig_pkts"]), str(r["resp_ip_bytes"])) == (
                z["orig_pkts"],
                z["resp_ip_bytes"],
            )
            assert (r["parent_uid"] or "-") == z["tunnel_parents"]


@pytest.mark.parametrize("name", TRACES)
def test_duckdb_reads_the_parquet_output(
    zeek_corpus: Path, outputs: dict[str, Path], name: str
) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = outputs[f"{name}.parquet"]
    con = duckdb.connect()
    n, tcp, first = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE proto = 'tcp'), min(ts) FROM read_parquet(?)",
        [str(path)],
    ).fetchone()
    expected = zeek_rows(zeek_corpus / name / "trace.pcap")
    assert n == len(expected)
    assert tcp == sum(z["proto"] == "tcp" for z in expected)
    # ts is a UTC timestamp: its epoch seconds are the smallest ts of our conn.log (the
    # corpus baselines mask their times).
    ours = read_conn_log(outputs[f"{name}.zeek"].read_text())
    assert first.timestamp() == pytest.approx(min(float(z["ts"]) for z in ours), abs=1e-6)


@pytest.mark.parametrize("name", TRACES)
def test_read_flows_and_streaming_batches(zeek_corpus: Path, name: str) -> None:
    trace = zeek_corpus / name / "trace.pcap"
    table = netwarden.read_flows(trace)
    assert isinstance(table, pa.Table) and table.schema == arrow.schema("flow")
    assert table.num_rows == len(zeek_rows(trace))
    batches = list(netwarden.iter_flow_batches([str(trace)], batch_rows=100))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert [len(b) for b in batches[:-1]] == [100] * (len(batches) - 1)
    assert 0 < len(batches[-1]) <= 100
    assert pa.Table.from_batches(batches).equals(table)
    # Engine options reach the engine: a 1 s UDP timeout can only split flows.
    short = netwarden.read_flows(str(trace), udp_timeout=1.0)
    assert short.num_rows >= table.num_rows


def test_to_pandas_when_installed(zeek_corpus: Path) -> None:
    pytest.importorskip("pandas")
    df = netwarden.read_flows(zeek_corpus / "gre_sample" / "trace.pcap").to_pandas()
    assert len(df) == len(zeek_rows(zeek_corpus / "gre_sample" / "trace.pcap"))
    assert str(df["ts"].dtype).startswith("datetime64[us, UTC]")


def test_import_netwarden_stays_light() -> None:
    code = "import sys, netwarden; print('pyarrow' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split()  # fmt: skip
    assert out == ["False", "False"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_flows_never_loads_pandas(zeek_corpus: Path, tmp_path: Path, fmt: str) -> None:
    """pyarrow imports pandas, when installed, at its first ``pa.array``/``pa.scalar``/
    ``to_numpy``: a fifth of a second of every ``netwarden flows`` run, for nothing. The
    writers build their arrays from buffers (netwarden/records/arrowbuf.py) instead."""
    pytest.importorskip("pandas")
    trace = zeek_corpus / "gre_sample" / "trace.pcap"  # tunnelled flows: parent uids
    code = (
        "import sys\nfrom netwarden.cli import main\n"
        f"rc = main(['flows', '--format', {fmt!r}, '-o', {str(tmp_path / 'out')!r}, {str(trace)!r}])\n"
        "print(rc, 'pandas' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          check=False)  # fmt: skip
    assert proc.stdout.split() == ["0", "False"], proc.stderr
    assert (tmp_path / "out").stat().st_size > 0


def test_read_flows_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="absent.pcap"):
        netwarden.read_flows(tmp_path / "absent.pcap")
    with pytest.raises(ConfigError, match="udp_timeot"):
        netwarden.read_flows(tmp_path / "absent.pcap", udp_timeot=3)
    with pytest.raises(ConfigError, match="udp_timeout"):
        netwarden.read_flows(tmp_path / "absent.pcap", udp_timeout=-1)


def _bad_inputs(tmp_path: Path, zeek_corpus: Path) -> dict[str, Path]:
    good = (zeek_corpus / "ftp_ipv4" / "trace.pcap").read_bytes()
    cases = {
        "missing": tmp_path / "absent.pcap",
        "foreign": tmp_path / "notes.pcap",
        # A valid file header, then a record header that runs past the end of the file.
        "cut_at_first_record": tmp_path / "cut.pcap",
    }
    cases["foreign"].write_text("not a capture\n")
    cases["cut_at_first_record"].write_bytes(good[: 24 + 9])
    return cases


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_capture_is_one_error_line_and_leaves_no_file(
    zeek_corpus: Path, tmp_path: Path, fmt: str
) -> None:
    for case, src in _bad_inputs(tmp_path, zeek_corpus).items():
        if fmt != "zeek" and case != "cut_at_first_record":
            continue  # refused before any writer exists: the same path for every format
        out = tmp_path / f"{case}.{fmt}"
        proc = flows_cli("--format", fmt, "-o", str(out), str(src))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, case
        assert len(lines) == 1 and lines[0].startswith("netwarden flows: error: "), (case, lines)
        assert src.name in lines[0]
        assert not out.exists(), case


def test_unwritable_output_is_one_error_line(zeek_corpus: Path, tmp_path: Path) -> None:
    trace = zeek_corpus / "ftp_ipv4" / "trace.pcap"
    for out in (tmp_path / "no-such-dir" / "flows.csv", tmp_path):
        proc = flows_cli("--format", "csv", "-o", str(out), str(trace))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("netwarden flows: error: cannot write ")
    assert not (tmp_path / "no-such-dir").exists()


def test_empty_capture_gives_a_valid_empty_file(zeek_corpus: Path, tmp_path: Path) -> None:
    header_only = tmp_path / "empty.pcap"
    header_only.write_bytes((zeek_corpus / "ftp_ipv4" / "trace.pcap").read_bytes()[:24])
    for fmt in FORMATS:
        out = tmp_path / f"empty.{fmt}"
        proc = flows_cli("--format", fmt, "-o", str(out), str(header_only))
        assert proc.returncode == 0, proc.stderr
        if fmt == "parquet":
            table = pq.read_table(out)
            assert table.num_rows == 0 and table.schema == arrow.schema("flow")
        elif fmt == "zeek":
            text = out.read_text()
            assert text.startswith("#separator") and text.rstrip().splitlines()[-1].startswith(
                "#close"
            )
            assert read_conn_log(text) == []
        elif fmt == "csv":
            text_columns = [f.name for f in arrow.schema("flow") if f.type != pa.binary(16)]
            assert list(csv.reader(out.read_text().splitlines())) == [text_columns]
        else:
            assert out.read_text() == ""


@pytest.mark.skipif(c_backend_missing() is not None, reason="needs the compiled build")
def test_compiled_and_arrow_row_joins_give_the_same_bytes(
    zeek_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensor.export.jsonlines import json_lines
    from sensor.export.zeeklog import conn_lines

    pytest.importorskip("sensor.export._rows")
    batch = pa.Table.from_batches(
        netwarden.iter_flow_batches(zeek_corpus / "gre_sample" / "trace.pcap")
    ).to_batches()[0]

    def text(f: Any) -> bytes:
        return b"".join(bytes(chunk) for chunk in f(batch))

    monkeypatch.setattr(textcols, "CHUNK_ROWS", 3)  # rows split across chunks
    compiled = [text(f) for f in (conn_lines, json_lines)]
    monkeypatch.setitem(sys.modules, "sensor.export._rows", None)  # import fails: Arrow joins
    assert [text(f) for f in (conn_lines, json_lines)] == compiled
    assert compiled[0].count(b"\n") == compiled[1].count(b"\n") == batch.num_rows > 3


def test_integers_and_text_joined_like_python(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.array([0, 9, 10, 99, 2**63, 2**64 - 1], np.uint64)
    words = pa.array(["skip", "", "a", "bc", "d\u00e9f", "yz", "x"])[1:]  # a sliced array
    pieces: list[textcols.Piece] = ["<", values, "|", words, ">\n"]
    want = "".join(
        f"<{v}|{w}>\n" for v, w in zip(values.tolist(), words.to_pylist(), strict=True)
    ).encode()

    def joined() -> bytes:
        return b"".join(bytes(c) for c in textcols.join_rows(pieces, len(values)))

    monkeypatch.setattr(textcols, "CHUNK_ROWS", 4)
    assert joined() == want
    monkeypatch.setitem(sys.modules, "sensor.export._rows", None)  # Arrow's join
    assert joined() == want


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whole_floats_print_as_arrow_prints_them(dtype: type) -> None:
    """Whole float columns go through the integer path: the same text as Arrow's cast, up to
    the largest whole value that prints without an exponent; any other column is Arrow's."""
    bound = {np.float64: 10**10, np.float32: 10**7}[dtype]
    rng = np.random.default_rng(7)
    whole = np.concatenate([[0, 1, 9, 10, 40, bound - 1], rng.integers(0, bound, 5000)])
    col = pa.array(whole.astype(dtype))
    fast = textcols.whole_floats(col)
    assert fast is not None
    assert [str(v) for v in fast.tolist()] == pc.cast(col, pa.string()).to_pylist()
    for other in ([1.5, 2.0], [-1.0, 2.0], [-0.0, 1.0], [float(bound), 1.0], [np.nan, 1.0],
                  [np.inf, 1.0]):  # fmt: skip
        assert textcols.whole_floats(pa.array(np.array(other, dtype))) is None, other
    assert textcols.whole_floats(pa.array([1.0, None], pa.float64())) is None
    assert textcols.whole_floats(pa.array([1, 2], pa.int64())) is None


def test_integer_lists_written_in_c_as_arrow_writes_them() -> None:
    """``first_sizes``-like columns: the compiled ``[a,b,c]`` text equals Arrow's join, for
    every unsigned width, empty lists, zeros, the largest values and sliced arrays."""
    pytest.importorskip("sensor.export._rows")

    def by_arrow(col: pa.ListArray) -> pa.Array:
        inner = pc.binary_join(col.cast(pa.list_(pa.string())), ",")
        return pc.binary_join_element_wise("[", inner, "]", "")

    rng = np.random.default_rng(3)
    for width in (8, 16, 32, 64):
        lens = rng.integers(0, 6, 400)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        values = rng.integers(0, 2 ** min(width, 63), offsets[-1], dtype=np.uint64)
        values[:2] = [0, 2**width - 1]
        col = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(f"u{width // 8}")))
        for part in (col, col.slice(7, 100), col.slice(0, 0)):
            assert textcols.list_text(part).equals(by_arrow(part)), width


def test_times_written_in_c_as_the_numpy_renderer_writes_them() -> None:
    """ISO 8601 text of the compiled path equals ``render.iso_text`` (the one the hunts and
    the Python fallback use), before 1970, at day and year edges and past year 9999."""
    pytest.importorskip("sensor.export._rows")
    from netwarden.records.render import iso_text

    rng = np.random.default_rng(5)
    edges = [0, -1, 1, 86_400 * 10**6 - 1, -62_135_596_800 * 10**6, 253_402_300_799_999_999,
             253_402_300_800 * 10**6, 951_782_400 * 10**6, 2**62, -(2**62)]  # fmt: skip
    us = np.concatenate([rng.integers(-(10**17), 3 * 10**17, 20_000), edges]).astype(np.int64)
    col = pa.Array.from_buffers(pa.timestamp("us", tz="UTC"), len(us), [None, pa.py_buffer(us)])
    assert textcols.time_text(col).to_pylist() == iso_text(us).to_pylist()
