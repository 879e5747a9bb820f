"""Prototxt text <-> NetParameter, with errors that point at file:line:column.

Parsing is protobuf's text format against the Caffe schema; this module adds what protobuf does
not give: the line where each top-level layer starts, and messages with the offending token and
a hint (a field put at the wrong level, a misspelt enum value, a type from an unknown fork).
"""

from __future__ import annotations

import difflib
import re

from google.protobuf import text_format

from proto_rewrite.caffe.schema import CaffeSchema, resolve_schema
from proto_rewrite.errors import PrototxtSyntaxError, UnknownFieldError

_LOCATION_PREFIX = re.compile(r"^\d+(:\d+)? : ")
_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "([^"]+)"')
_NO_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named ([^ .]+)')


BOM = "\ufeff"
EXCERPT = 80  # characters of a long line quoted around an error's column


def read_prototxt(path, what: str = "prototxt") -> str:
    """The text of a prototxt: refused before reading when it is not a regular file or is over the
    model text limit (:func:`proto_rewrite.limits.check_text_size`); a UTF-8 byte-order mark at
    the start is dropped (editors on Windows write one)."""
    from proto_rewrite.fileio import read_text
    from proto_rewrite.input_guard import require_regular_file
    from proto_rewrite.limits import check_text_size

    info = require_regular_file(path, what)
    if info is not None:
        check_text_size(info.st_size, what, path=path)
    text = read_text(path, what)
    return text[1:] if text.startswith(BOM) else text


def parse_net_text(text: str, path, schema: CaffeSchema | None = None) -> object:
    """Parse prototxt text into a NetParameter of ``schema`` (default: the bundled one; any
    generation, no upgrade here)."""
    schema = resolve_schema(schema)
    net = schema.NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_extension=False)
    except text_format.ParseError as err:
        raise _translate_parse_error(err, text, path, schema) from err
    return net


def format_net_text(net) -> str:
    """V2 prototxt text of ``net``: fields in schema order, floats in their shortest exact form."""
    return text_format.MessageToString(net)


def layer_block_lines(text: str) -> list[tuple[str, int]]:
    """(field name, 1-based line) of every top-level ``layer {`` / ``layers {`` block, in order."""
    found = []
    depth = 0
    line = 1
    last_word = None
    last_word_line = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch in "\"'":
            i = _skip_string(text, i)
        elif ch == "{" or ch == "<":
            if depth == 0 and last_word in ("layer", "layers"):
                found.append((last_word, last_word_line))
            depth += 1
            last_word = None
            i += 1
        elif ch == "}" or ch == ">":
            depth -= 1
            last_word = None
            i += 1
        elif ch.isalnum() or ch == "_":
            start = i
            while i < n and (text[i].isalnum() or text[i] in "_.-+"):
                i += 1
            last_word, last_word_line = text[start:i], line
        elif ch == ":":
            i += 1  # 'layer: {' keeps the word before the colon
        else:
            if not ch.isspace():
                last_word = None
            i += 1
    return found


def _skip_string(text: str, i: int) -> int:
    quote = text[i]
    i += 1
    while i < len(text) and text[i] != quote and text[i] != "\n":
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _without_quoted_line(detail: str, text: str, line: int | None, column: int | None) -> str:
    """protobuf quotes the whole offending line before its message (a 3 MB one-line prototxt
    would be quoted whole): a long line is quoted as an excerpt around the column."""
    if not detail.startswith("'") or not line or line < 1:
        return detail
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return detail
    end = text.find("\n", start)
    whole = text[start : len(text) if end < 0 else end]
    for quoted in (whole, whole.rstrip()):
        prefix = f"'{quoted}': "
        if len(quoted) > 2 * EXCERPT and detail.startswith(prefix):
            at = max(0, (column or 1) - 1)
            first, last = max(0, at - EXCERPT // 2), min(len(quoted), at + EXCERPT // 2)
            excerpt = ("..." if first else "") + quoted[first:last] + ("..." if last < len(quoted) else "")
            return f"'{excerpt}': {_shorten_words(detail[len(prefix) :])}"
    return _shorten_words(detail)


def _shorten_words(text: str) -> str:
    return re.sub(rf"\S{{{EXCERPT + 1},}}", lambda match: _shorten(match.group(0), EXCERPT), text)


def _shorten(text: str, limit: int) -> str:
    """``text`` when it is at most ``limit`` characters, else its start and end around ' ... '."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def _token_at(text: str, line: int | None, column: int | None) -> str | None:
    if not line or not column:
        return None
    lines = text.splitlines()
    if line > len(lines):
        return None
    rest = lines[line - 1][column - 1 : column - 1 + 4 * EXCERPT]
    match = re.match(r'"[^"]*"?|\'[^\']*\'?|[\w.+-]+|\S', rest)
    return match.group(0) if match else None


def _translate_parse_error(err: text_format.ParseError, text: str, path, schema: CaffeSchema) -> PrototxtSyntaxError:
    line, column = err.GetLine(), err.GetColumn()
    detail = _without_quoted_line(_LOCATION_PREFIX.sub("", str(err)), text, line, column)
    detail = _shorten(detail, 4 * EXCERPT)
    token = _token_at(text, line, column)
    token = None if token is None else _shorten(token, EXCERPT)
    unknown_field = _NO_FIELD.search(detail)
    if unknown_field:
        message_name, field_name = unknown_field.groups()
        short = message_name.split(".")[-1]
        return UnknownFieldError(
            f"unknown field '{field_name}' in {short}",
            path=path,
            line=line,
            column=column,
            hint=_unknown_field_hint(schema, message_name, field_name),
            options=("caffe_schema",),
        )
    unknown_enum = _NO_ENUM.search(detail)
    if unknown_enum:
        enum_name, value = unknown_enum.groups()
        return PrototxtSyntaxError(
            f"'{value}' is not a value of {enum_name.split('.', 1)[-1]}",
            path=path,
            line=line,
            column=column,
            hint=_unknown_enum_hint(schema, enum_name, value),
        )
    near = f" (at '{token}')" if token else ""
    return PrototxtSyntaxError(
        f"invalid prototxt: {detail.rstrip('.')}{near}",
        path=path,
        line=line,
        column=column,
        hint="check the brackets and the field syntax ('name: value' or 'name { ... }') around this point",
    )


def _unknown_field_hint(schema: CaffeSchema, full_name: str, field_name: str) -> str:
    message_name = full_name.split(".")[-1]
    owners = sorted(
        name
        for name in schema.message_names()
        if field_name in schema.pool.FindMessageTypeByName(f"caffe.{name}").fields_by_name
    )
    if owners:
        return (
            f"'{field_name}' is a field of {', '.join(owners[:3])}, not of {message_name}: "
            "is it at the wrong level, outside its *_param { } block?"
        )
    descriptor = schema.pool.FindMessageTypeByName(full_name)
    close = difflib.get_close_matches(field_name, list(descriptor.fields_by_name), n=1)
    typo = f"did you mean '{close[0]}'? Otherwise: " if close else ""
    return (
        f"{typo}'{field_name}' is in neither BVLC Caffe nor the forks proto-rewrite knows "
        "(see schemas/README.md); if your model comes from another Caffe fork, compile that "
        "fork's caffe.proto (python -m grpc_tools.protoc -I DIR --descriptor_set_out=fork.pb "
        "DIR/caffe.proto) and pass fork.pb as caffe_schema"
    )


def _unknown_enum_hint(schema: CaffeSchema, enum_name: str, value: str) -> str:
    enum = schema.pool.FindEnumTypeByName(enum_name)
    names = list(enum.values_by_name)
    close = difflib.get_close_matches(value.upper(), names, n=1) or difflib.get_close_matches(value, names, n=1)
    if close:
        return f"did you mean {close[0]}?"
    return f"valid values: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}"
