"""Positions inside YAML scalars: map a (line, column) of an expression to the file.

A rule's ``when`` is a YAML scalar; its text starts somewhere in the file and may be a plain,
quoted, literal (``|``) or folded (``>``) scalar. `ScalarLocator` maps a 1-based position in
the scalar's *value* back to the 1-based line and column in the file: exactly for one-line
scalars and ``|`` blocks, and for folded or multi-line scalars by walking the folded lines
(exact unless the value contains quoted escapes).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class ScalarLocator:
    node: yaml.ScalarNode
    lines: tuple[str, ...]
    """The file's lines."""

    def file_position(self, line: int, column: int) -> tuple[int, int]:
        start = self.node.start_mark
        style = self.node.style
        if style == "|":
            first, indent = self._block_start()
            return first + line, indent + column
        quote = 1 if style in ("'", '"') else 0
        if style != ">" and start.line == self.node.end_mark.line:
            return start.line + 1, start.column + quote + column
        return self._folded(line, column, quote)

    def _block_start(self) -> tuple[int, int]:
        """0-based index of the line before the block's first content line, and its indent."""
        header = self.node.start_mark.line
        for text in self.lines[header + 1 :]:
            if text.strip():
                return header + 1, len(text) - len(text.lstrip(" "))
        return header + 1, 0

    def _segments(self, quote: int) -> list[tuple[int, int, int]]:
        """(1-based file line, 1-based start column, length) of each non-blank source line."""
        start, end = self.node.start_mark, self.node.end_mark
        out = []
        if self.node.style == ">":
            first, indent = self._block_start()
            rows = range(first, min(end.line + 1, len(self.lines)))
        else:
            rows = range(start.line, min(end.line + 1, len(self.lines)))
        for row in rows:
            text = self.lines[row]
            offset = start.column + quote if row == start.line and self.node.style != ">" else 0
            body = text[offset:]
            stripped = body.lstrip(" ")
            if not stripped.strip():
                continue
            col = offset + len(body) - len(stripped)
            out.append((row + 1, col + 1, len(stripped.rstrip())))
        return out

    def _folded(self, line: int, column: int, quote: int) -> tuple[int, int]:
        value = str(self.node.value)
        rows = value.split("\n")
        offset = sum(len(r) + 1 for r in rows[: line - 1]) + column - 1
        segments = self._segments(quote)
        for file_line, file_col, length in segments:
            if offset <= length:
                return file_line, file_col + offset
            offset -= length + 1
        if segments:
            last_line, last_col, last_len = segments[-1]
            return last_line, last_col + last_len
        return self.node.start_mark.line + 1, self.node.start_mark.column + 1
