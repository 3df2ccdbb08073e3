"""The runtime's copy of the protocol equals the host's: every value in ``SHARED_WITH_RUNTIME`` is pinned here.

The runtime (``sandbox/ptc_runtime.py``) is standard library only and is sent into the sandbox as source, so it
cannot import ``ptc_mcp.sandboxes.protocol``; it keeps copies. These tests load the runtime from its path as a
module (nothing runs: its ``main()`` starts only under the bootstrap's name) and compare.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import get_args

import pytest

from ptc_mcp.errors import ErrorType
from ptc_mcp.sandboxes import protocol

RUNTIME_PATH = Path(__file__).resolve().parents[2] / "sandbox" / "ptc_runtime.py"
RUNTIME_ONLY = {"PROGRAM_FILE", "AWAIT_HINT", "RESERVED"}
"""The runtime's own module constants, which the host does not share."""


@pytest.fixture(scope="module")
def runtime() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ptc_runtime_pinned", RUNTIME_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module_constants(path: Path) -> set[str]:
    """UPPER_CASE names assigned at the top level of a module (``A, B = ...`` counts both)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                names.update(item.id for item in elements if isinstance(item, ast.Name) and item.id.isupper())
    return names


@pytest.mark.parametrize("name", sorted(protocol.SHARED_WITH_RUNTIME))
def test_each_shared_constant_has_the_hosts_value_in_the_runtime(runtime: ModuleType, name: str) -> None:
    host_value = protocol.SHARED_WITH_RUNTIME[name]
    assert hasattr(runtime, name), f"sandbox/ptc_runtime.py lacks {name} (the host's protocol.py has it)"
    runtime_value = getattr(runtime, name)
    assert type(runtime_value) is type(host_value) and runtime_value == host_value, (
        f"{name}: the runtime has {runtime_value!r}, the host {host_value!r}"
    )


def test_the_table_names_each_host_constant_by_its_own_name() -> None:
    for name, value in protocol.SHARED_WITH_RUNTIME.items():
        assert getattr(protocol, name) == value, name


def test_every_runtime_constant_is_either_shared_or_runtime_only() -> None:
    """A constant added to the runtime must be pinned (in ``SHARED_WITH_RUNTIME``) or declared its own here."""
    constants = _module_constants(RUNTIME_PATH)
    unclassified = constants - set(protocol.SHARED_WITH_RUNTIME) - RUNTIME_ONLY
    assert not unclassified, f"pin these in protocol.SHARED_WITH_RUNTIME or list them in RUNTIME_ONLY: {unclassified}"
    assert not RUNTIME_ONLY - constants, "RUNTIME_ONLY names a constant the runtime no longer has"


def test_message_models_carry_the_shared_type_names() -> None:
    models = {protocol.READY: protocol.Ready, protocol.CALL: protocol.Call}
    models |= {protocol.OUTPUT: protocol.Output, protocol.DONE: protocol.Done}
    for name, model in models.items():
        assert get_args(model.model_fields["type"].annotation) == (name,), model.__name__


def test_host_limits_leave_room_for_what_the_runtime_sends() -> None:
    assert protocol.RESULT_NESTING < protocol.MAX_NESTING  # a value at the runtime's depth still nests in a message
    assert protocol.MAX_QUERY_CHARS >= protocol.MAX_NAME_CHARS  # the runtime cuts names at the query bound + 1
    assert f"'__name__':{protocol.RUNTIME_MODULE!r}" in protocol.BOOTSTRAP


def test_every_error_type_the_runtime_reports_is_one_the_host_knows() -> None:
    """``done`` errors: each ``kind = "..."`` in the runtime is an ``ErrorType`` (else the host says program_error)."""
    kinds = {
        node.value.value
        for node in ast.walk(ast.parse(RUNTIME_PATH.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == "kind" for target in node.targets)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    assert "program_error" in kinds  # the walk found the runtime's error kinds at all
    assert kinds <= set(get_args(ErrorType)), kinds - set(get_args(ErrorType))


def test_the_runtime_parses_as_python_3_9() -> None:
    ast.parse(RUNTIME_PATH.read_text(encoding="utf-8"), feature_version=(3, 9))
