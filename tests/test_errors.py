"""One exception tree (``ptc_mcp.errors``), one way through exception groups, one pydantic error formatter."""

from __future__ import annotations

import importlib
import inspect

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

import ptc_mcp.errors
from ptc_mcp.catalog.model import UnknownToolError
from ptc_mcp.catalog.validation import ArgumentError
from ptc_mcp.errors import (
    BusyError,
    PtcError,
    SandboxFailure,
    first_in_group,
    raise_from_group,
    validation_problems,
)
from tests.test_imports import MODULES

PRIVATE_OK = ("ptc_mcp.emulators.",)
"""Where an exception that never leaves its module may stay out of the tree (named with a leading underscore)."""


def _project_exceptions() -> list[type[BaseException]]:
    found = []
    for name in MODULES:
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for _attr, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


def test_every_exception_of_the_project_is_in_the_tree() -> None:
    exceptions = _project_exceptions()
    assert {cls.__name__ for cls in exceptions} >= {"ProtocolError", "ApiError", "LoginRequired", "ArgumentError"}
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in exceptions
        if not issubclass(cls, PtcError)
        and not (cls.__name__.startswith("_") and cls.__module__.startswith(PRIVATE_OK))
    ]
    assert outside == []


def test_the_tree_in_the_docstring_names_every_public_exception() -> None:
    tree = ptc_mcp.errors.__doc__ or ""
    public = [cls.__name__ for cls in _project_exceptions() if not cls.__name__.startswith("_")]
    assert [name for name in public if name not in tree] == []


def test_errors_the_program_sees_as_python_errors_keep_their_python_base() -> None:
    # The sandbox protocol answers a TypeError as the program's TypeError, a LookupError as a tool error.
    assert issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, PtcError)
    assert issubclass(UnknownToolError, LookupError) and not issubclass(UnknownToolError, KeyError)
    assert str(UnknownToolError("a.b", [])).startswith("unknown tool 'a.b'")


def test_first_in_group_looks_through_nested_groups_depth_first() -> None:
    failure = SandboxFailure("died")
    group = BaseExceptionGroup("outer", [ValueError("v"), BaseExceptionGroup("inner", [KeyError("k"), failure])])
    assert first_in_group(group, SandboxFailure) is failure
    assert isinstance(first_in_group(group, BaseException), ValueError)
    assert first_in_group(group, BusyError) is None


def test_raise_from_group_raises_the_first_ptc_error_else_the_group() -> None:
    busy = BusyError("full")
    with pytest.raises(BusyError) as caught:
        raise_from_group(ExceptionGroup("g", [RuntimeError("x"), ExceptionGroup("h", [busy])]))
    assert caught.value is busy
    plain = ExceptionGroup("g", [RuntimeError("x")])
    with pytest.raises(ExceptionGroup) as group:
        raise_from_group(plain)
    assert group.value is plain


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int
    name: str = "x"

    @field_validator("name", mode="after")
    @classmethod
    def _short(cls, value: str) -> str:
        if len(value) > 3:
            raise ValueError("too long")
        return value


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Section.model_validate(data)
    return caught.value


def test_validation_problems_name_every_bad_key_under_its_section() -> None:
    text = validation_problems(_error({"size": "big", "name": "long", "extra": 1}), under="sandbox.docker")
    assert text.split("; ") == [
        "sandbox.docker.size: Input should be a valid integer, unable to parse string as an integer",
        "sandbox.docker.name: Value error, too long",
        "sandbox.docker.extra: Extra inputs are not permitted",
    ]


def test_validation_problems_name_the_whole_value_when_it_is_the_problem() -> None:
    assert validation_problems(_error([1])) == "<root>: Input should be a valid dictionary or instance of _Section"
    assert validation_problems(_error(3), whole="arguments").startswith("arguments: ")
    assert validation_problems(_error(3), under="sandbox.agentcore").startswith("sandbox.agentcore: ")


def test_validation_problems_can_keep_the_first_error_only() -> None:
    assert validation_problems(_error({"size": "big", "name": "long"}), limit=1) == (
        "size: Input should be a valid integer, unable to parse string as an integer"
    )
