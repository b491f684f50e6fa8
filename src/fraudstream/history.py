"""Reading a transaction history from any file: the one place every command reads one.

- **Format by content**: Parquet starts with ``PAR1`` (whatever its name); a file named
  ``.parquet`` that is not Parquet is refused (it is usually a CSV saved under the wrong
  name, and guessing would hide that); a first byte ``{`` means JSON lines; else CSV.
- **Columns**: the user's map, then a well-known public layout recognised by its columns
  (Sparkov, PaySim, IEEE-CIS: `fraudstream.layouts`, which may derive ids and times), then
  the Handbook's names, then ours (`fraudstream.columns`);
  a required field without a column is named before any row is read. Extra columns
  (``TX_TIME_SECONDS``, …) are dropped.
- **Bad rows**: checked in one vectorised pass. By default the first bad row stops the read
  with the file, its row (data rows from 1, the header not counted), the field, the reason
  and how many rows are bad; with ``skip_invalid`` they are left out and written, with their
  reasons and original values, to a rejects CSV.
- **Memory**: the file is scanned lazily and collected by polars' streaming engine, so only
  the typed columns we keep are ever held, never the file's text.
"""

from __future__ import annotations

import codecs
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

import polars as pl

from fraudstream.columns import ColumnMap, is_naive, reason, sniff_date_format, typed
from fraudstream.errors import BadRowsError, DataFileError

P = ParamSpec("P")
T = TypeVar("T")
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class ReadOptions:
    """``rejects``: where skipped rows go (default ``<file stem>.rejects.csv`` beside it)."""

    columns: ColumnMap = field(default_factory=ColumnMap)
    skip_invalid: bool = False
    rejects: Path | None = None


@dataclass(frozen=True)
class History:
    """A history in our columns and types, and what reading it found."""

    frame: pl.DataFrame
    path: Path
    skipped: int = 0
    rejects: Path | None = None
    naive_times: bool = False
    """Some timestamps had no time zone and were taken as UTC."""
    encoding: str | None = None
    """A CSV not in UTF-8: the codec it was read as (`csv_dialect`)."""
    layout: str | None = None
    """``the Sparkov layout: customer_id=cc_num, …`` when the columns were recognised as a
    well-known public dataset's (`fraudstream.layouts`)."""


def resolve(path: Path) -> Path:
    """A file, or the ``transactions`` file of a `fraudstream simulate` folder.

    Raises:
        DataFileError: no such file.
    """
    if path.is_dir():
        for name in ("transactions.parquet", "transactions.csv"):
            if (path / name).is_file():
                return path / name
        files = sorted(p.name for p in path.iterdir() if p.is_file())
        held = (
            f"it holds {len(files)} files ({', '.join(files[:3])}{', …' if len(files) > 3 else ''})"
        )
        raise DataFileError(
            path,
            "no transactions.parquet or transactions.csv in this folder; "
            + (f"{held}: pass one file, or join them into one first" if files else "it is empty"),
        )
    if not path.exists():
        raise DataFileError(path, "no such file")
    return path


def file_format(path: Path) -> str:
    """``parquet``, ``csv`` or ``jsonl``, from the file's first bytes.

    Raises:
        DataFileError: the file cannot be opened, or is named Parquet but is not.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise DataFileError(path, exc.strerror or str(exc)) from None
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    packed = _packed(head)
    if packed is not None:
        raise DataFileError(path, packed)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        looks = "text (a CSV? name it .csv)" if _is_text(head) else "something else"
        raise DataFileError(path, f"not a Parquet file (no PAR1 header; it looks like {looks})")
    return "jsonl" if head.lstrip().startswith(b"{") else "csv"


_PACKED = {
    b"PK\x03\x04": "a ZIP archive (or an Excel workbook): extract the CSV inside, or save "
    "the sheet as CSV",
    b"\x1f\x8b": "gzip-compressed: decompress it first (gunzip -k FILE)",
    b"ARROW1": "an Arrow IPC / Feather file: write it as Parquet first "
    "(polars: pl.read_ipc(FILE).write_parquet(OUT))",
}


def _packed(head: bytes) -> str | None:
    """Why a file in a container we do not open is refused (None: not one of them). A pickle
    (the Handbook's published daily files) is never loaded: loading one runs any code in it."""
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (
            "a Python pickle: not read, as loading one can run any code in it; write it as "
            "Parquet or CSV first (pandas: pd.read_pickle(FILE).to_parquet(OUT))"
        )
    return next((why for magic, why in _PACKED.items() if head.startswith(magic)), None)


def _is_text(head: bytes) -> bool:
    try:
        head.decode()
    except UnicodeDecodeError:
        return False
    return b"\0" not in head


def scan(path: Path, fmt: str | None = None) -> pl.LazyFrame:
    """The file as a lazy frame, CSV values as text (we parse and check them ourselves), in
    its separator and encoding (`csv_dialect`)."""
    fmt = fmt or file_format(path)
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=10_000)
    source, dialect = readable_csv(path)
    return pl.scan_csv(source, infer_schema=False, separator=dialect.separator)


def readable_csv(path: Path) -> tuple[Path, CsvDialect]:
    """A CSV as polars can read it (UTF-8: the file itself, or its `utf8_copy`), and its
    dialect."""
    dialect = csv_dialect(path)
    return (path if dialect.encoding is None else utf8_copy(path, dialect.encoding)), dialect


@dataclass(frozen=True)
class CsvDialect:
    separator: str = ","
    encoding: str | None = None
    """None: UTF-8 (with or without a byte-order mark); else the codec its text is in."""


def csv_dialect(path: Path) -> CsvDialect:
    """How a CSV file is written, from its text: the separator is whichever of ``, ; TAB |``
    its header line holds most of (outside quotes; a comma when none); the text is UTF-8, or
    else Windows-1252 (what spreadsheets save: Latin-1 plus ``€`` and typographic quotes),
    or Latin-1 where even that does not decode. The whole file is checked (~1 s a GB).

    Raises:
        DataFileError: the file cannot be read.
    """
    try:
        key = _version(path)
        if key in _DIALECTS:
            return _DIALECTS[key]
        with path.open("rb") as fh:
            head = fh.read(CHUNK)
            utf8 = _decodes(fh, head, "utf-8")
            encoding = None
            if not utf8:
                fh.seek(0)
                head = fh.read(CHUNK)
                encoding = "cp1252" if _decodes(fh, head, "cp1252") else "latin-1"
    except OSError as exc:
        raise DataFileError(path, exc.strerror or str(exc)) from None
    header = head.decode(encoding or "utf-8", errors="replace").lstrip("\ufeff")
    header = header.split("\n", 1)[0]
    counts = {sep: _unquoted(header).count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    found = _DIALECTS[key] = CsvDialect(best if counts[best] else ",", encoding)
    return found


CHUNK = 1 << 20
SEPARATORS = (",", ";", "\t", "|")


def _decodes(fh: BinaryIO, head: bytes, codec: str) -> bool:
    """Whether ``head`` and the rest of ``fh`` decode as ``codec``."""
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        chunk = head
        while chunk:
            decoder.decode(chunk)
            chunk = fh.read(CHUNK)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _unquoted(line: str) -> str:
    """``line`` without its double-quoted parts (a quoted value may hold any separator)."""
    return "".join(part for j, part in enumerate(line.split('"')) if j % 2 == 0)


Version = tuple[Path, int, int]
"""A file as it is now: its path, size and modification time."""
_DIALECTS: dict[Version, CsvDialect] = {}
"""Per file version: a command reads a file more than once."""
_COPIES: dict[Version, Path] = {}
_COPY_DIR: tempfile.TemporaryDirectory[str] | None = None


def _version(path: Path) -> Version:
    stat = path.stat()
    return path.resolve(), stat.st_size, stat.st_mtime_ns


def utf8_copy(path: Path, encoding: str) -> Path:
    """The file re-encoded as UTF-8 in a temporary folder (removed at exit), made once per
    file version: polars reads UTF-8 only."""
    global _COPY_DIR
    key = _version(path)
    if key not in _COPIES:
        if _COPY_DIR is None:
            _COPY_DIR = tempfile.TemporaryDirectory(prefix="fraudstream-utf8-")
        out = Path(_COPY_DIR.name) / f"{len(_COPIES)}-{path.name}"
        with path.open("rb") as src, out.open("wb") as dst:
            decoder = codecs.getincrementaldecoder(encoding)()
            while chunk := src.read(CHUNK):
                dst.write(decoder.decode(chunk).encode())
            dst.write(decoder.decode(b"", final=True).encode())
        _COPIES[key] = out
    return _COPIES[key]


def read_history(path: Path, options: ReadOptions | None = None) -> History:
    """Every valid row of a history file, in our columns and types.

    Raises:
        DataFileError: the file is unreadable or a required field has no column.
        BadRowsError: a row is bad and ``skip_invalid`` is off.
        ConfigError: the column map names a column the file does not have.
    """
    options = options or ReadOptions()
    path = resolve(path)
    fmt = file_format(path)
    lazy = scan(path, fmt)
    columns = guarded(path, lazy.collect_schema).names()
    sources, layout = options.columns.plan(columns)
    if layout is not None:
        lazy = layout.derive(lazy, sources)
    lazy = lazy.with_row_index("_row", offset=1)
    schema = guarded(path, lazy.collect_schema)
    stamp = sources["timestamp"]
    date_format = options.columns.date_format
    if date_format is None and (schema[stamp] == pl.String or schema[stamp].is_numeric()):
        sample = guarded(path, lazy.select(stamp).drop_nulls().head(1000).collect)
        whole = lazy.select(stamp).drop_nulls()
        date_format = sniff_date_format(
            sample[stamp], lambda: guarded(path, whole.collect, engine="streaming")[stamp]
        )
    exprs: list[pl.Expr] = []
    reasons: list[pl.Expr] = []
    for name, source in sources.items():
        raw, dtype = pl.col(source), schema[source]
        value = typed(name, raw, dtype, date_format)
        exprs.append(value.alias(name))
        derived = layout.derives(name, source) if layout is not None else None
        reasons.append(reason(name, raw, value) if derived is None else derived.reason(name, value))
    select = lazy.select("_row", *exprs, pl.coalesce(reasons).alias("_reason"))
    frame = guarded(path, select.collect, engine="streaming")
    naive = is_naive(schema[stamp], date_format)
    kept = None if layout is None else [c for c in columns if c in layout.reads(sources)]
    history = _checked(path, fmt, frame, options, naive, kept)
    if fmt == "csv" and (encoding := csv_dialect(path).encoding) is not None:
        history = replace(history, encoding=encoding)
    if layout is None:
        return history
    return replace(history, layout=f"the {layout.name} layout: {layout.describe(sources)}")


def _checked(
    path: Path,
    fmt: str,
    frame: pl.DataFrame,
    options: ReadOptions,
    naive_times: bool,
    kept: list[str] | None = None,
) -> History:
    bad = frame.filter(pl.col("_reason").is_not_null()).select("_row", "_reason")
    rejects: Path | None = None
    if bad.height:
        if not options.skip_invalid:
            row, why = bad.row(0)
            raise BadRowsError(path, row, why, bad.height, frame.height)
        rejects = options.rejects or path.with_name(f"{path.stem}.rejects.csv")
        write_rejects(path, fmt, bad, rejects, kept)
        frame = frame.filter(pl.col("_reason").is_null())
    return History(_defaults(frame.drop("_row", "_reason")), path, bad.height, rejects, naive_times)


def _defaults(frame: pl.DataFrame) -> pl.DataFrame:
    """What a Handbook row lacks, as `fraudstream.schema.normalize_record` fills it: the
    terminal doubles as the merchant, EUR, card present."""
    fills = {
        "merchant_id": pl.col("terminal_id"),
        "currency": pl.lit("EUR"),
        "channel": pl.lit("card_present"),
    }
    return frame.with_columns(
        (pl.col(name).fill_null(fill) if name in frame.columns else fill).alias(name)
        for name, fill in fills.items()
    )


def write_rejects(
    path: Path, fmt: str, bad: pl.DataFrame, out: Path, kept: list[str] | None = None
) -> None:
    """``row, field, reason`` and the row's original values (as text), one line per bad row:
    every column, or only ``kept`` (a known layout's: its personal columns are never read).

    Raises:
        DataFileError: the rejects file cannot be written.
    """
    reasons = bad.select(
        pl.col("_row").alias("row"),
        pl.col("_reason").str.split_exact(":", 1).struct.field("field_0").alias("field"),
        pl.col("_reason").alias("reason"),
    )
    original = scan(path, fmt)
    if kept is not None:
        original = original.select(kept)
    original = original.with_row_index("row", offset=1)
    originals = guarded(
        path,
        original.join(reasons.lazy(), on="row", how="inner")
        .select(
            "row", "field", "reason", pl.all().exclude("row", "field", "reason").cast(pl.String)
        )
        .sort("row")
        .collect,
    )
    guarded(out, originals.write_csv, out)


def read_labels(history: Path, given: Path | None = None) -> pl.DataFrame | None:
    """``given``, else the ``labels.parquet`` (or ``labels.csv``) beside the history (as
    `fraudstream simulate` writes them), else None.

    Raises:
        DataFileError: the labels file is unreadable.
    """
    if given is not None:
        return read_label_file(given)
    folder = history if history.is_dir() else history.parent
    for name in ("labels.parquet", "labels.csv"):
        if (folder / name).is_file():
            return read_label_file(folder / name)
    return None


def read_label_file(path: Path) -> pl.DataFrame:
    """Labels as every reader takes them: ``transaction_id`` as text, ``reported_at`` in UTC
    (ISO 8601, a spreadsheet's layout or Unix time, as transaction times), ``is_fraud`` a
    boolean (written 1/0, true/false or yes/no; all True when the file has no such column: a
    chargeback file lists the frauds). Other columns are kept as they are.

    Raises:
        DataFileError: unreadable, or no ``transaction_id`` / ``reported_at`` column.
        BadRowsError: a row whose id is empty or whose value does not parse, the first named.
    """
    frame = read_table(path)
    for need in ("transaction_id", "reported_at"):
        if need not in frame.columns:
            raise DataFileError(
                path, f"labels: no {need} column (it has {', '.join(frame.columns)})"
            )
    if "is_fraud" not in frame.columns:
        frame = frame.with_columns(pl.lit(True).alias("is_fraud"))
    stamps = frame["reported_at"]
    fmt = None
    if stamps.dtype == pl.String or stamps.dtype.is_numeric():
        fmt = sniff_date_format(stamps.drop_nulls().head(1000), stamps.drop_nulls)
    checks = {
        "transaction_id": pl.col("transaction_id").cast(pl.String).str.strip_chars(),
        "reported_at": typed("timestamp", pl.col("reported_at"), stamps.dtype, fmt),
        "is_fraud": typed("is_fraud", pl.col("is_fraud"), frame["is_fraud"].dtype, None),
    }
    text = {n: pl.col(n).cast(pl.String) for n in checks}
    unparsed = {"reported_at": "not a date-time", "is_fraud": "not 0/1, true/false or yes/no"}
    why = pl.coalesce(
        *(pl.when(t.is_null() | (t.str.strip_chars() == "")).then(pl.lit(f"{n}: required"))
          for n, t in text.items()),
        *(pl.when(checks[n].is_null()).then(pl.format(f"{n}: {u}, got {{}}", text[n]))
          for n, u in unparsed.items()),
    )  # fmt: skip
    whys = frame.select(why.alias("why"))["why"]
    bad = whys.is_not_null()
    if bad.any():
        first = int(bad.arg_true()[0])
        raise BadRowsError(
            path, first + 1, str(whys[first]), int(bad.sum()), frame.height, skippable=False
        )
    return frame.with_columns(value.alias(name) for name, value in checks.items())


def read_table(path: Path) -> pl.DataFrame:
    """A side table (labels, profiles) in any of the formats, read whole (they are small).

    Raises:
        DataFileError: the file is missing or unreadable.
    """
    path = resolve(path) if not path.exists() else path
    fmt = file_format(path)
    if fmt == "csv":
        source, dialect = readable_csv(path)
        return guarded(
            path,
            pl.read_csv,
            source,
            separator=dialect.separator,
            try_parse_dates=True,
            infer_schema_length=10_000,
        )
    return guarded(path, scan(path, fmt).collect)


def guarded(path: Path, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(...)``, its polars or OS error turned into one line naming ``path``."""
    try:
        return fn(*args, **kwargs)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataFileError(path, _first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
