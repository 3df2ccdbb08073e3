"""SECURITY.md principle 8: whatever arrives as ``execute_program``'s input, the answer is a typed result.

Property tests through the real MCP server (official in-memory client) on the ``process`` backend: random strings
with lone surrogates and NULs, sizes around and far past the limit, wrong types for every argument, unknown
arguments. Bad input is ``invalid_input`` before any sandbox starts; anything else runs and ends typed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ptc_mcp.errors import ErrorType
from ptc_mcp.server import TOOL_NAME
from tests.sandboxes.conftest import BACKENDS
from tests.security.conftest import Secured, error_type, secured_app

pytestmark = [pytest.mark.anyio, pytest.mark.bubblewrap]

CONTRACT = set(get_args(ErrorType))
MAX_CODE = 1_000_000


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture
async def host() -> AsyncIterator[Secured]:
    """One app on the process backend for all examples of a property (the input checks are the host's)."""
    async with BACKENDS["process"]() as under_test, secured_app(under_test) as secured:
        yield secured


any_text = st.text(st.characters(codec=None, blacklist_categories=()), max_size=200)
"""Text including lone surrogates, NULs and every control character."""
not_text = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.integers(), max_size=3)
)
"""JSON values that are not strings (JSON carries no bytes, NaN or infinities: clients send those as null)."""
wrong_types = st.one_of(
    not_text.map(lambda v: {"code": v}),
    st.fixed_dictionaries({"code": st.just("1"), "timeout_s": any_text | st.booleans() | st.lists(st.integers())}),
    st.fixed_dictionaries(
        {"code": st.just("1"), "timeout_s": st.floats(max_value=0, allow_infinity=False) | st.integers(max_value=0)}
    ),
    st.fixed_dictionaries({"code": st.just("1"), "session": not_text.filter(lambda v: v is not None)}),
    st.fixed_dictionaries(
        {
            "code": st.just("1"),
            "reset": any_text | st.integers(min_value=2) | st.floats(allow_nan=False, allow_infinity=False),
        }
    ),
    st.fixed_dictionaries({"code": st.just("1")}, optional={"x": st.integers()}).filter(lambda d: "x" in d),
    st.dictionaries(st.text(max_size=5).filter(lambda k: k not in ("code", "session", "reset", "timeout_s")), any_text),
)
bad_code = st.one_of(
    any_text.map(lambda t: t + "\x00"),
    st.tuples(any_text, st.sampled_from(["\ud800", "\udfff", "\udc80"]), any_text).map("".join),
    st.integers(min_value=MAX_CODE + 1, max_value=20 * 1024 * 1024).map(lambda n: "#" * n),
)


def _typed(result: Any) -> str | None:
    assert result.structured_content is not None, result
    structured = result.structured_content
    assert structured["status"] in ("ok", "error")
    assert result.is_error == (structured["status"] == "error")
    kind = error_type(structured)
    assert kind is None or kind in CONTRACT
    result.content[0].text.encode("utf-8")  # the text for the model is valid UTF-8
    return kind


@given(arguments=wrong_types)
@fuzz(150)
async def test_wrong_argument_types_are_invalid_input_before_any_sandbox(host: Secured, arguments: Any) -> None:
    result = await host.client.call_tool(TOOL_NAME, arguments)
    assert _typed(result) == "invalid_input", (arguments, result.structured_content)
    assert host.backend.sessions == []


@given(code=bad_code)
@fuzz(60)
async def test_nul_bytes_lone_surrogates_and_oversized_code_are_invalid_input(host: Secured, code: str) -> None:
    result = await host.client.call_tool(TOOL_NAME, {"code": code})
    assert _typed(result) == "invalid_input"
    assert host.backend.sessions == []


@given(code=any_text)
@fuzz(40)
async def test_any_other_text_runs_and_ends_in_a_typed_result(host: Secured, code: str) -> None:
    assume("\x00" not in code)
    try:
        code.encode("utf-8")
    except UnicodeEncodeError:
        assume(False)
    result = await host.client.call_tool(TOOL_NAME, {"code": code, "timeout_s": 3})
    assert _typed(result) in (None, "program_error", "timeout", "memory_limit", "output_limit")


async def test_code_just_under_the_size_limit_runs(host: Secured) -> None:
    code = "# " + "x" * (MAX_CODE - 10) + "\n'fits'"
    result = await host.run(code)
    assert result["status"] == "ok" and result["result"] == "fits", result
    await host.assert_serving()
