"""The strict JSON parser every API view reads its body with.

Refused here, before any view or service runs (a 422 through the one error
handler, nothing written): NaN and Infinity (DRF's strict mode), nesting deeper
than CRONSVC_MAX_JSON_DEPTH, lone UTF-16 surrogates (not encodable as UTF-8, so
PostgreSQL refuses them and SQLite stores rows nothing can read back), and NUL
characters (which PostgreSQL's jsonb cannot hold).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def problem(value: Any, max_depth: int) -> str | None:
    """Why `value` (parsed JSON) is refused, or None. Iterative: any depth is safe."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            children = item.items() if isinstance(item, dict) else ((None, v) for v in item)
            for key, child in children:
                if key is not None:
                    stack.append((key, depth))
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            if "\x00" in item:
                return "strings may not contain NUL (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "strings may not contain lone UTF-16 surrogates (\\ud800-\\udfff)"
    return None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"nested deeper than {settings.CRONSVC_MAX_JSON_DEPTH} levels"
            ) from None
        reason = problem(data, settings.CRONSVC_MAX_JSON_DEPTH)
        if reason:
            raise ParseError(reason)
        return data
