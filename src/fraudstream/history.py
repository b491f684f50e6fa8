"""Reading a transaction history from any file: the one place every command reads one.

- **Format by content**: Parquet starts with ``PAR1`` (whatever its name); a file named
  ``.parquet`` that is not Parquet is refused (it is usually a CSV saved under the wrong
  name, and guessing would hide that); a first byte ``{`` means JSON lines; else CSV.
- **Columns**: the user's map, then a well-known public layout recognised by its columns
  (Sparkov, PaySim, IEEE-CIS: `fraudstream.layouts`, which may derive ids and times), then
  the Handbook's names, then ours (`fraudstream.columns`);
  a required field without a column is named before any row is read. Extra columns
  (``TX_TIME_SECONDS``, …) are dropped.
- **Rows** are numbered as the user sees them in the file: a CSV's data rows from 1, the
  header not counted, blank lines counted (so row N is line N+1 in an editor, unless a
  quoted value spans lines); a JSON lines file's lines from 1. Blank lines (and CSV rows
  empty in every column read) hold nothing and are skipped.
- **Bad rows**: checked in one vectorised pass. By default the first bad row stops the read
  with the file, its row, the field, the reason and how many rows are bad; with
  ``skip_invalid`` they are left out and written, with their reasons and original values,
  to a rejects CSV. A CSV row polars cannot split (more values than the header has columns)
  is such a bad row too; a quote that never closes stops the read naming its row and field.
- **Duplicate ids**: a row whose ``transaction_id`` an earlier row has is left out and
  counted (`History.duplicates`): the first in file order is kept, as the workers keep the
  first to arrive (``produce`` sends in file order; a later one is scored but changes no
  state), so the offline features are the online ones.
- **Memory**: the file is scanned lazily and collected by polars' streaming engine, so only
  the typed columns we keep are ever held, never the file's text.
"""

from __future__ import annotations

import codecs
import csv
import re
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

import polars as pl

from fraudstream.columns import (
    ColumnMap,
    bounded,
    fallback,
    is_naive,
    reason,
    sniff_date_format,
    typed,
    zone_less,
)
from fraudstream.errors import BadRowsError, DataFileError
from fraudstream.layouts import Layout

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
    duplicates: int = 0
    """Rows left out because an earlier row has their ``transaction_id``."""
    duplicate: str | None = None
    """The first of them: ``row 2 repeats t1 of row 1``."""


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
    text = head.removeprefix(BOM).lstrip()
    if not text and len(head) < 256:
        raise DataFileError(path, "the file is empty (no rows)")
    return "jsonl" if text.startswith(b"{") else "csv"


BOM = codecs.BOM_UTF8


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
        return pl.scan_ndjson(readable_jsonl(path).source, infer_schema_length=10_000)
    source, dialect = readable_csv(path)
    return pl.scan_csv(source, infer_schema=False, separator=dialect.separator)


def numbered(lazy: pl.LazyFrame, path: Path, fmt: str, read: Collection[str] = ()) -> pl.LazyFrame:
    """``lazy`` (`scan`) with each row's number as the user sees it in ``_row`` (see the
    module's docstring), and, in a CSV, without the rows empty in every column of ``read``:
    blank lines (polars gives them as rows of nulls) and a spreadsheet's empty rows, which
    hold nothing to refuse. Columns outside ``read`` are not consulted: they are never
    loaded (a layout's personal columns)."""
    lazy = lazy.with_row_index("_row", offset=1)
    if fmt == "jsonl" and (lines := readable_jsonl(path).rows_to_lines) is not None:
        # polars skips blank lines: row r is the r-th line that is not blank
        row = pl.col("_row").cast(pl.Int64)
        lazy = lazy.with_columns(row + pl.lit(lines).search_sorted(row, side="right"))
    if fmt == "csv" and read:
        lazy = lazy.filter(~pl.all_horizontal(pl.col(c).is_null() for c in read))
    return lazy


@dataclass(frozen=True)
class JsonLines:
    source: Path
    """The file, or a copy without its byte-order mark (polars reads none)."""
    rows_to_lines: pl.Series | None = None
    """When blank lines precede a row: per blank line, how many rows come before it (plus
    one), for `numbered` to turn polars' row numbers into line numbers."""


def readable_jsonl(path: Path) -> JsonLines:
    """A JSON lines file as polars reads it; found once per file version. A file of no
    blank line and no byte-order mark (the usual) costs one scan for ``\\n\\n`` (~1.3 s a GB).

    Raises:
        DataFileError: the file cannot be read.
    """
    try:
        key = _version(path)
        if key not in _JSONL:
            _JSONL[key] = _jsonl(path)
    except OSError as exc:
        raise DataFileError(path, exc.strerror or str(exc)) from None
    return _JSONL[key]


def _jsonl(path: Path) -> JsonLines:
    with path.open("rb") as fh:
        head = fh.read(CHUNK)
        bom = head.startswith(BOM)
        blank = _blank_line(fh, head)
    if not bom and not blank:
        return JsonLines(path)
    source = path
    if bom:
        source = _temporary(path, "nobom")
        with path.open("rb") as src, source.open("wb") as dst:
            dst.write(src.read(CHUNK).removeprefix(BOM))
            while chunk := src.read(CHUNK):
                dst.write(chunk)
    if not blank:
        return JsonLines(source)
    blanks: list[int] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                blanks.append(number - len(blanks))
    return JsonLines(source, pl.Series(blanks, dtype=pl.Int64))


_BLANK = re.compile(rb"\n[ \t\r]*\n")


def _blank_line(fh: BinaryIO, head: bytes) -> bool:
    """Whether a blank line comes before a line that is not (trailing ones shift nothing)."""
    buffer = b"\n" + head  # the file's start begins a line
    while buffer:
        found = _BLANK.search(buffer)
        if found is not None:
            rest = buffer[found.end() :]
            while not rest.strip():
                rest = fh.read(CHUNK)
                if not rest:
                    return False
            return True
        cut = buffer.rfind(b"\n")
        chunk = fh.read(CHUNK)
        buffer = buffer[cut:] + chunk if chunk else b""
    return False


_JSONL: dict[Version, JsonLines] = {}


def readable_csv(path: Path) -> tuple[Path, CsvDialect]:
    """A CSV as polars can read it (UTF-8: the file itself, or its `utf8_copy`; its
    `repair_csv` copy once a read found rows polars cannot split), and its dialect."""
    dialect = csv_dialect(path)
    key = _version(path)
    if key in _REPAIRED:
        return _REPAIRED[key].source, dialect
    return (path if dialect.encoding is None else utf8_copy(path, dialect.encoding)), dialect


@dataclass(frozen=True)
class Repaired:
    source: Path
    """The file with each ragged row replaced by a blank line: numbering kept, row skipped."""
    ragged: pl.DataFrame
    """``_row``, ``_reason``: why each was taken out."""


_REPAIRED: dict[Version, Repaired] = {}


def ragged_rows(path: Path) -> pl.DataFrame:
    """``_row``, ``_reason`` of the rows `repair_csv` took out of the file (none before)."""
    found = _REPAIRED.get(_version(path))
    return found.ragged if found is not None else pl.DataFrame(schema=_RAGGED)


_RAGGED = {"_row": pl.Int64, "_reason": pl.String}


def repair_csv(path: Path) -> bool:
    """After polars failed to split a CSV into rows: find the rows with more values than the
    header has columns (an unquoted separator in a value: ``12,5``) and make the copy
    `readable_csv` gives from then on, each such row replaced by a blank line. Row by row in
    Python (~1 s a million rows), so only once a read failed. False when there is none.

    Raises:
        DataFileError: a quote opens and never closes, naming its row and field (where it
            ends is a guess, so no row after it can be trusted).
    """
    source, dialect = readable_csv(path)
    sep = dialect.separator
    out = _temporary(path, "repaired")
    header: list[str] = []
    ragged: list[tuple[int, str]] = []
    row = 0
    with source.open(encoding="utf-8-sig", newline="") as src, out.open("w") as dst:
        record = ""
        for line in src:
            record += line
            if record.count('"') % 2:
                continue  # a quoted value goes on to the next line
            body = record.rstrip("\r\n")
            values = _unquoted(body).count(sep) + 1
            if not header:
                header = next(csv.reader([body], delimiter=sep))
                dst.write(record)
            elif body.strip() and values != len(header):
                row += 1
                ragged.append((row, _ragged(values, len(header), sep, record.count("\n"))))
                dst.write("\n")
            else:
                row += 1
                dst.write(record)
            record = ""
        if record:
            opened = _unquoted(record[: record.rfind('"')]).count(sep)
            name = header[opened] if opened < len(header) else f"column {opened + 1}"
            raise DataFileError(
                path,
                f'row {row + 1}: {name}: a quote (") opens here and is never closed (the '
                "rest of the file would be one value)",
            )
    if not ragged:
        return False
    _REPAIRED[_version(path)] = Repaired(out, pl.DataFrame(ragged, schema=_RAGGED, orient="row"))
    return True


def _ragged(values: int, columns: int, sep: str, lines: int) -> str:
    if lines > 1:
        return (
            f"{values} values over {lines} lines where the header has {columns} columns (a "
            "quote that does not close where it should?)"
        )
    return (
        f"{values} values where the header has {columns} columns (a value holding {sep!r} "
        f'must be quoted, e.g. "12{sep}5")'
    )


def _temporary(path: Path, what: str) -> Path:
    """A new file's path in the temporary folder removed at exit."""
    global _COPY_DIR
    if _COPY_DIR is None:
        _COPY_DIR = tempfile.TemporaryDirectory(prefix="fraudstream-utf8-")
    folder = Path(_COPY_DIR.name)
    return folder / f"{sum(1 for _ in folder.iterdir())}-{what}-{path.name}"


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
    key = _version(path)
    if key not in _COPIES:
        out = _temporary(path, "utf8")
        with path.open("rb") as src, out.open("wb") as dst:
            decoder = codecs.getincrementaldecoder(encoding)()
            while chunk := src.read(CHUNK):
                dst.write(decoder.decode(chunk).encode())
            dst.write(decoder.decode(b"", final=True).encode())
        _COPIES[key] = out
    return _COPIES[key]


def read_history(path: Path, options: ReadOptions | None = None) -> History:
    """Every valid row of a history file, in our columns and types, each id once.

    Raises:
        DataFileError: the file is unreadable or a required field has no column.
        BadRowsError: a row is bad and ``skip_invalid`` is off.
        ConfigError: the column map names a column the file does not have.
    """
    options = options or ReadOptions()
    path = resolve(path)
    fmt = file_format(path)
    loaded = load(path, fmt, options.columns)
    history = _checked(path, fmt, loaded, options)
    if fmt == "csv" and (encoding := csv_dialect(path).encoding) is not None:
        history = replace(history, encoding=encoding)
    return history


@dataclass(frozen=True)
class Loaded:
    """A file's rows as both readers load them (`load`)."""

    frame: pl.DataFrame
    """``_row`` (`numbered`), each field, ``_reason`` (null: nothing found wrong), and for
    each field `load` parsed, its original value in ``<field>`` + `ORIGINAL` if asked."""
    ragged: pl.DataFrame
    """``_row``, ``_reason`` of the rows polars could not split (`repair_csv`)."""
    layout: Layout | None
    sources: dict[str, str]
    read: list[str]
    """The file's columns read (a layout's personal ones never are)."""
    naive: bool
    """Some timestamps had no time zone and were taken as UTC."""

    @property
    def said(self) -> str | None:
        """``the Sparkov layout: customer_id=cc_num, …`` for a recognised layout."""
        if self.layout is None:
            return None
        return f"the {self.layout.name} layout: {self.layout.describe(self.sources)}"


ORIGINAL = ":original"


def load(
    path: Path,
    fmt: str,
    columns: ColumnMap,
    *,
    as_is: Collection[str] = (),
    without: Collection[str] = (),
    originals: bool = False,
) -> Loaded:
    """The one way a file becomes rows, for the offline commands and ``produce`` alike: its
    columns mapped, derived (a layout), numbered, blank rows skipped, each field typed and
    checked in one vectorised pass with the same rules (`fraudstream.columns`). Fields in
    ``as_is`` are passed through as the file has them (``produce`` leaves their checks to
    the schema), those in ``without`` not read; ``originals`` keeps the parsed fields' raw
    values beside them (``produce``'s rejects show what the file held).

    Raises:
        DataFileError: unreadable, a required field without a column, a stray quote.
        ConfigError: the column map names a column the file does not have.
    """
    try:
        return _load(path, fmt, columns, as_is, without, originals)
    except MalformedCsvError:
        if fmt != "csv" or not repair_csv(path):
            raise
    return _load(path, fmt, columns, as_is, without, originals)


def _load(
    path: Path,
    fmt: str,
    columns: ColumnMap,
    as_is: Collection[str],
    without: Collection[str],
    originals: bool,
) -> Loaded:
    lazy = scan(path, fmt)
    names = guarded(path, lazy.collect_schema).names()
    sources, layout = columns.plan(names)
    sources = {n: c for n, c in sources.items() if n not in without}
    if layout is not None:
        lazy = layout.derive(lazy, sources)
    reads = layout.reads(sources) if layout is not None else set(sources.values())
    read = [c for c in names if c in reads]
    lazy = numbered(lazy, path, fmt, read)
    frame, naive = typed_rows(
        path, lazy, sources, columns.date_format, layout, as_is=as_is, originals=originals
    )
    return Loaded(frame, ragged_rows(path), layout, sources, read, naive)


def typed_rows(
    path: Path,
    lazy: pl.LazyFrame,
    sources: dict[str, str],
    date_format: str | None,
    layout: Layout | None = None,
    *,
    as_is: Collection[str] = (),
    originals: bool = False,
) -> tuple[pl.DataFrame, bool]:
    """``lazy`` (with ``_row``) as `Loaded.frame`, and whether some times had no zone. The
    timestamps' layout is the user's, else sniffed from the first 1000; when that was one ISO
    form and a value further down is another, the rows are read again value by value
    (`fallback`): the usual file pays for one format only.

    Raises:
        DataFileError: unreadable (`MalformedCsvError`: polars could not split a CSV).
    """
    schema = guarded(path, lazy.collect_schema)
    stamp = sources["timestamp"]
    sniffed = date_format is None and (schema[stamp] == pl.String or schema[stamp].is_numeric())
    if sniffed:
        sample = guarded(path, lazy.select(stamp).drop_nulls().head(1000).collect)
        whole = lazy.select(stamp).drop_nulls()
        date_format = sniff_date_format(
            sample[stamp], lambda: guarded(path, whole.collect, engine="streaming")[stamp]
        )

    def rows(date_format: str | None, extra: pl.Expr | None = None) -> pl.DataFrame:
        # two steps: each field parsed once, then checked from the parsed column (a
        # streaming query computes an expression as often as it is used)
        parsed = lazy.with_columns(
            typed(name, pl.col(source), schema[source], date_format).alias(name + _PARSED)
            for name, source in sources.items()
            if name not in as_is or schema[source] == pl.Binary
        )
        exprs: list[pl.Expr] = []
        reasons: list[pl.Expr] = []
        for name, source in sources.items():
            raw, dtype = pl.col(source), schema[source]
            if name in as_is and dtype != pl.Binary:
                exprs.append(raw.alias(name))
                continue
            value = bounded(name, pl.col(name + _PARSED))
            exprs.append(value.alias(name))
            if originals:
                exprs.append(raw.alias(name + ORIGINAL))
            derived = layout.derives(name, source) if layout is not None else None
            reasons.append(
                reason(name, raw, value, dtype) if derived is None else derived.reason(name, value)
            )
        why = pl.coalesce(reasons) if reasons else pl.lit(None, dtype=pl.String)
        more = [] if extra is None else [extra.alias("_extra")]
        select = parsed.select(pl.col("_row").cast(pl.Int64), *exprs, why.alias("_reason"), *more)
        return guarded(path, select.collect, engine="streaming")

    raw_stamp = pl.col(stamp)
    again = fallback(date_format, sniffed)
    naive = is_naive(schema[stamp], date_format)
    if again is None:
        return rows(date_format), naive
    value = pl.col("timestamp" + _PARSED)
    frame = rows(date_format, raw_stamp.is_not_null() & value.is_null())
    if frame["_extra"].any():  # another ISO form further down: value by value
        frame = rows(again, zone_less(raw_stamp))
        naive = bool(frame["_extra"].any())
    return frame.drop("_extra"), naive


_PARSED = ":parsed"


def _checked(path: Path, fmt: str, loaded: Loaded, options: ReadOptions) -> History:
    frame = loaded.frame
    bad = pl.concat(
        [frame.filter(pl.col("_reason").is_not_null()).select("_row", "_reason"), loaded.ragged]
    ).sort("_row")
    rejects: Path | None = None
    if bad.height:
        total = frame.height + loaded.ragged.height
        if not options.skip_invalid:
            row, why = bad.row(0)
            raise BadRowsError(path, row, why, bad.height, total)
        rejects = options.rejects or path.with_name(f"{path.stem}.rejects.csv")
        kept = loaded.read if loaded.layout is not None else None
        write_rejects(path, fmt, bad, rejects, kept)
        frame = frame.filter(pl.col("_reason").is_null())
    frame, duplicates, duplicate = _first_of_each_id(frame)
    return History(
        _defaults(frame.drop("_row", "_reason")),
        path,
        bad.height,
        rejects,
        loaded.naive,
        layout=loaded.said,
        duplicates=duplicates,
        duplicate=duplicate,
    )


def _first_of_each_id(frame: pl.DataFrame) -> tuple[pl.DataFrame, int, str | None]:
    """``frame`` with each ``transaction_id`` once (the first row), how many rows went and
    the first of them: ``row 2 repeats t1 of row 1``. The same rule as the online engine's
    idempotency, so a backfill computes the features the workers did."""
    ids = frame.get_column("transaction_id")
    if ids.n_unique() == frame.height:  # the usual case: one hash pass, no copy
        return frame, 0, None
    first = ids.is_first_distinct()
    repeats = frame.filter(~first)
    row, tid = repeats.select("_row", "transaction_id").row(0)
    earlier = frame.filter(pl.col("transaction_id") == tid).get_column("_row")[0]
    return frame.filter(first), repeats.height, f"row {row} repeats {tid} of row {earlier}"


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
    A row polars could not split has no field, and no values (the row tells where it is).

    Raises:
        DataFileError: the rejects file cannot be written.
    """
    field_ = pl.col("_reason").str.split_exact(":", 1).struct.field("field_0")
    reasons = bad.select(
        pl.col("_row").alias("row"),
        pl.when(pl.col("_reason").str.contains(":"))
        .then(field_)
        .otherwise(pl.lit(""))
        .alias("field"),
        pl.col("_reason").alias("reason"),
    )
    original = scan(path, fmt)
    if kept is not None:
        original = original.select(kept)
    original = numbered(original, path, fmt).with_columns(
        pl.col("_row").cast(pl.Int64), pl.col(pl.Binary).bin.encode("hex")
    )
    originals = guarded(
        path,
        reasons.lazy()
        .join(original.rename({"_row": "row"}), on="row", how="left")
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
    """``fn(...)``, its polars or OS error turned into one line naming ``path``
    (`MalformedCsvError` when polars could not split a CSV into rows)."""
    try:
        return fn(*args, **kwargs)
    except (pl.exceptions.PolarsError, OSError) as exc:
        line = _first_line(exc)
        if isinstance(exc, pl.exceptions.PolarsError) and any(m in line for m in _MALFORMED):
            raise MalformedCsvError(path, line) from None
        raise DataFileError(path, line) from None


class MalformedCsvError(DataFileError):
    """Polars could not split a CSV into rows: `load` looks for the rows (`repair_csv`)."""


_MALFORMED = ("found more fields than defined", "CSV malformed", "could not parse `")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
