"""Argument checks against a tool's ``inputSchema``, before the call leaves the host.

``check_arguments`` raises ``ArgumentError`` (also a ``TypeError``, as Python raises for a bad call) whose message
names the tool, the argument and what was expected::

    expenses.get_expenses(): argument 'quarter' must be one of 'Q1', 'Q2', 'Q3', 'Q4', got 'Q5'
    expenses.get_expenses(): missing required argument 'employee_id' (str)
    expenses.get_expenses(): unexpected argument 'foo'      (undeclared top-level arguments are refused)

Validators are compiled once per tool definition and cached (the check runs on every nested call). A schema
that is itself invalid, or that refers to documents we cannot resolve, is not checked at all: the server will
judge the arguments, and a warning is logged once per tool.
"""

from __future__ import annotations

import difflib
import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import jsonschema.exceptions  # type: ignore[import-untyped,unused-ignore]
import jsonschema.validators  # type: ignore[import-untyped,unused-ignore]
import mcp_types
import referencing.exceptions

from ptc_mcp.catalog.signatures import JSON_TYPE_NAMES, schema_type
from ptc_mcp.errors import PtcError

__all__ = ["ArgumentError", "ArgumentProblem", "check_arguments", "clear_validator_cache"]

logger = logging.getLogger("ptc_mcp.catalog")

ArgumentProblem = Literal["missing", "unexpected", "type", "choice", "invalid", "not_an_object"]

_MAX_SHOWN_VALUE = 60
_MAX_CHOICES = 12


class ArgumentError(PtcError, TypeError):
    """A program called a tool with arguments its ``inputSchema`` rejects."""

    def __init__(self, message: str, *, tool: str, argument: str | None, problem: ArgumentProblem) -> None:
        super().__init__(message)
        self.tool = tool
        """The tool as the message names it (``server.tool`` when the server is known)."""
        self.argument = argument
        """The argument at fault, as a path (``filter.start``, ``items[2].amount``); ``None`` for the whole call."""
        self.problem: ArgumentProblem = problem


@dataclass
class _Compiled:
    validator: Any  # a jsonschema Validator, or None when the schema cannot be used
    schema: Mapping[str, Any]
    quick: Callable[[Mapping[str, Any]], bool] | None = None
    """For plain schemas: says ``True`` only for arguments ``validator`` accepts, so those skip it."""


_cache: dict[int, tuple[weakref.ref[mcp_types.Tool], str, _Compiled]] = {}
_by_schema: dict[str, _Compiled] = {}
_lock = threading.Lock()
_MAX_SCHEMAS = 4096


def clear_validator_cache() -> None:
    """Forget every compiled validator (tests; a catalog refresh does not need it)."""
    with _lock:
        _cache.clear()
        _by_schema.clear()


def check_arguments(tool: mcp_types.Tool, arguments: Any, *, server: str | None = None) -> None:
    """Raise ``ArgumentError`` unless ``arguments`` satisfy the tool's ``inputSchema``."""
    label = f"{server}.{tool.name}" if server else tool.name
    if not isinstance(arguments, Mapping):
        raise ArgumentError(
            f"{label}(): arguments must be a dict of keyword arguments, got {type(arguments).__name__}",
            tool=label,
            argument=None,
            problem="not_an_object",
        )
    compiled = _compiled(tool, label)
    if compiled.validator is None or (compiled.quick is not None and compiled.quick(arguments)):
        return
    try:
        first = next(compiled.validator.iter_errors(arguments), None)
        if first is None:
            return
        errors = list(compiled.validator.iter_errors(arguments))
    except referencing.exceptions.Unresolvable:
        _give_up(tool, label, compiled, "it refers to a schema that cannot be resolved")
        return
    except RecursionError:
        _give_up(tool, label, compiled, "it nests too deeply")
        return
    best = jsonschema.exceptions.best_match(errors)  # deepest (one argument) first, then the earliest
    if best is None:  # pragma: no cover - iter_errors yielded at least one error
        return
    raise _to_argument_error(best, label, compiled.schema, arguments)


def _compiled(tool: mcp_types.Tool, label: str) -> _Compiled:
    key = id(tool)
    entry = _cache.get(key)
    if entry is not None and entry[0]() is tool:
        return entry[2]
    schema = tool.input_schema if isinstance(tool.input_schema, Mapping) else {}
    try:
        fingerprint = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        fingerprint = repr(schema)
    with _lock:
        compiled = _by_schema.get(fingerprint)
        if compiled is None:
            compiled = _compile(schema, label)
            if len(_by_schema) >= _MAX_SCHEMAS:
                _by_schema.clear()
            _by_schema[fingerprint] = compiled
        if len(_cache) >= _MAX_SCHEMAS:
            _cache.clear()
        _cache[key] = (weakref.ref(tool, _forget(key)), fingerprint, compiled)
    return compiled


def _forget(key: int) -> Any:
    def callback(_: object) -> None:
        _cache.pop(key, None)

    return callback


def _strict_top_level(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Refuse undeclared top-level arguments unless the schema says what to do with them.

    Most servers' schemas leave ``additionalProperties`` unset, so a misspelled optional argument would be
    silently ignored by the tool; refusing it (with a did-you-mean) lets the program fix the typo.
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return schema
    if any(key in schema for key in ("additionalProperties", "patternProperties", "unevaluatedProperties")):
        return schema
    if any(key in schema for key in ("allOf", "anyOf", "oneOf", "$ref")):
        return schema  # properties may come from elsewhere: leave such schemas as they are
    return {**schema, "additionalProperties": False}


def _compile(schema: Mapping[str, Any], label: str) -> _Compiled:
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(dict(schema))
        strict = _strict_top_level(schema)
        return _Compiled(validator=cls(strict), schema=strict, quick=_quick_check(strict))
    except Exception as exc:  # any failure here means "cannot check", never "cannot call"
        logger.warning("%s: inputSchema is not a valid JSON Schema, arguments are not checked (%s)", label, _short(exc))
        return _Compiled(validator=None, schema=schema)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_NO_CONSTRAINT = frozenset({"title", "description", "default", "examples", "$comment"})
_PLAIN_TOP = frozenset({"type", "properties", "required", "additionalProperties", "$schema"}) | _NO_CONSTRAINT


def _quick_check(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool] | None:
    """A check without jsonschema for the schema most tools declare: an object of named arguments, each at most
    typed. It answers ``True`` only where jsonschema would accept (exact Python types: ``True`` is no integer, and
    ``1.0``, which JSON Schema takes for one, is left to jsonschema), so a call it passes needs nothing else and
    one it fails gets jsonschema's verdict and message. ``None`` for any other schema."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    additional = schema.get("additionalProperties", True)
    if (
        not set(schema) <= _PLAIN_TOP
        or schema.get("type", "object") != "object"
        or "draft-03" in str(schema.get("$schema", ""))  # whose ``required`` means something else
        or not isinstance(properties, Mapping)
        or not isinstance(required, list)
        or not all(isinstance(name, str) for name in required)
        or not isinstance(additional, bool)
    ):
        return None
    allowed: dict[str, tuple[type, ...] | None] = {}
    for name, prop in properties.items():
        if not isinstance(prop, Mapping) or not set(prop) <= _NO_CONSTRAINT | {"type"}:
            return None
        kind = prop.get("type")
        kinds = [kind] if isinstance(kind, str) else kind
        if kind is None:
            allowed[name] = None
        elif isinstance(kinds, list) and all(isinstance(k, str) and k in _JSON_TYPES for k in kinds):
            allowed[name] = tuple(t for k in kinds for t in _JSON_TYPES[k])
        else:
            return None
    needed = frozenset(required)

    def quick(arguments: Mapping[str, Any]) -> bool:
        if not needed <= arguments.keys():
            return False
        for key, value in arguments.items():
            if key not in allowed:
                if not additional:
                    return False
            elif (types := allowed[key]) is not None and type(value) not in types:
                return False
        return True

    return quick


def _give_up(tool: mcp_types.Tool, label: str, compiled: _Compiled, why: str) -> None:
    if compiled.validator is not None:
        logger.warning("%s: inputSchema cannot be used (%s), arguments are not checked", label, why)
        compiled.validator = None


def _short(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return text[:200]


def _to_argument_error(
    error: jsonschema.exceptions.ValidationError, label: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]
) -> ArgumentError:
    path = list(error.absolute_path)
    where = _path_text(path)
    kind = error.validator
    if kind == "required" and isinstance(error.instance, Mapping):
        missing = next(
            (name for name in _as_list(error.validator_value) if isinstance(name, str) and name not in error.instance),
            None,
        )
        if missing is not None:
            name = _path_text([*path, missing])
            properties = _as_mapping(_as_mapping(error.schema).get("properties"))
            expected = schema_type(_as_mapping(properties.get(missing)), root=schema)
            hint = f" ({expected})" if expected != "Any" else ""
            extras = sorted(str(k) for k in error.instance if k not in properties)
            typo = difflib.get_close_matches(missing, extras, n=1) if properties else []
            if typo:  # a misspelled required argument: point at the spelling, as for optional ones
                hint += f"; got unexpected argument {_path_text([*path, typo[0]])!r}: did you mean {name!r}?"
            return ArgumentError(
                f"{label}(): missing required argument {name!r}{hint}", tool=label, argument=name, problem="missing"
            )
    if kind == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set(_as_mapping(_as_mapping(error.schema).get("properties")))
        extras = sorted(str(k) for k in error.instance if k not in known)
        if extras:
            name = _path_text([*path, extras[0]])
            close = difflib.get_close_matches(extras[0], sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            accepted = ", ".join(sorted(known)) if len(known) <= 12 else ""
            accepted = f" (accepted: {accepted})" if accepted and not close else ""
            return ArgumentError(
                f"{label}(): unexpected argument {name!r}{hint}{accepted}",
                tool=label,
                argument=name,
                problem="unexpected",
            )
    subject = f"argument {where!r}" if where else "the arguments"
    got = _shown(error.instance)
    if kind == "enum":
        choices = _as_list(error.validator_value)
        listed = ", ".join(_shown(c) for c in choices[:_MAX_CHOICES]) + (", …" if len(choices) > _MAX_CHOICES else "")
        return ArgumentError(
            f"{label}(): {subject} must be one of {listed}, got {got}", tool=label, argument=where, problem="choice"
        )
    if kind == "const":
        return ArgumentError(
            f"{label}(): {subject} must be {_shown(error.validator_value)}, got {got}",
            tool=label,
            argument=where,
            problem="choice",
        )
    if kind == "type":
        expected = _type_names(error.validator_value)
        return ArgumentError(
            f"{label}(): {subject} must be {expected}, got {_json_type_name(error.instance)} {got}",
            tool=label,
            argument=where,
            problem="type",
        )
    return ArgumentError(
        f"{label}(): {subject} is invalid: {_short(error)}", tool=label, argument=where, problem="invalid"
    )


def _path_text(path: list[Any]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _type_names(value: Any) -> str:
    names = [JSON_TYPE_NAMES.get(v, str(v)) for v in (value if isinstance(value, list) else [value])]
    if "float" in names and "int" not in names:
        names[names.index("float")] = "float (or int)"
    return " or ".join(names)


def _json_type_name(value: Any) -> str:
    if value is None:
        return "None"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 1] + "…"


def _as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
