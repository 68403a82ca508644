"""Comments in `.wmap` text: found by scanning lines (`#` inside a string is text), then attached
to statements so `wmap fmt` keeps them.

Leading comment lines attach to the next statement; a comment on a statement's own line trails it
(kept with a leading space, so the printer puts it back on that line). Comments before `wmap 1` or
on its line lead the first statement after it (the AST has no place for them on the version line).
"""

from __future__ import annotations

from wmap.lang.statements import Statement, StatementList, VersionLine


def scan_comments(text: str) -> dict[int, tuple[str, bool]]:
    """line -> (comment text, whether code precedes it on that line). `#` inside strings is text."""
    out: dict[int, tuple[str, bool]] = {}
    for n, line in enumerate(text.split("\n"), start=1):
        if "#" not in line:
            continue
        k = comment_start(line)
        if k is not None:
            code = line[:k].strip()
            out[n] = (line[k:].rstrip("\r"), bool(code) and code != "\\")
    return out


def comment_start(line: str) -> int | None:
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
        i += 1
    return None


def _stmt_lines(node: Statement) -> tuple[int, int]:
    if isinstance(node, StatementList):
        first, last = node.items[0].span, node.items[-1].span
        return first.line, (last.end_line or last.line)
    span = node.span
    return span.line, (span.end_line or span.line)


Commented = tuple[Statement, list[str]]


def attach_comments(statements: list[Statement], comments: dict[int, tuple[str, bool]]
                    ) -> tuple[list[Commented], list[str]]:
    """Each statement with the comments that belong to it, and the comments after the last one."""
    lines = sorted(comments)
    out: list[Commented] = []
    k = 0
    carried: list[str] = []  # comments of the version line, handed to the next statement
    for st in statements:
        start, end = _stmt_lines(st)
        lead: list[str] = []
        trail: list[str] = []
        while k < len(lines) and lines[k] <= end:
            text, _ = comments[lines[k]]
            (lead if lines[k] < start else trail).append(text)
            k += 1
        if isinstance(st, VersionLine):
            carried += lead + trail
            out.append((st, []))
            continue
        out.append((st, carried + lead + [" " + t for t in trail]))  # a leading space marks "same line"
        carried = []
    trailing = carried + [comments[ln][0] for ln in lines[k:]]
    return out, trailing
