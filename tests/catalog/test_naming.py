from __future__ import annotations

import pytest

from ptc_mcp.catalog.naming import RESERVED_GLOBALS, assign_identifiers, global_name, to_identifier
from ptc_mcp.catalog.runtime_catalog import build_runtime_catalog

from .helpers import downstream


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_expenses", "get_expenses"),
        ("get-expenses", "get_expenses"),
        ("files.read", "files_read"),
        ("list items", "list_items"),
        ("2fa_verify", "_2fa_verify"),
        ("class", "class_"),
        ("from", "from_"),
        ("async", "async_"),
        ("None", "None_"),
        ("match", "match"),
        ("type", "type"),
        ("__init__", "__init___"),
        ("", "_"),
        ("café", "caf_"),
        ("$ref", "_ref"),
    ],
)
def test_names_map_to_identifiers_predictably(name: str, expected: str) -> None:
    ident = to_identifier(name)
    assert ident == expected
    assert ident.isidentifier()


def test_collisions_are_resolved_by_sorted_order_with_numeric_suffixes() -> None:
    assert assign_identifiers(["get.user", "get-user", "get user"]) == {
        "get user": "get_user",
        "get-user": "get_user_2",
        "get.user": "get_user_3",
    }


def test_a_name_that_is_already_an_identifier_keeps_it_in_a_collision() -> None:
    idents = assign_identifiers(["get-user", "get_user"])
    assert idents == {"get_user": "get_user", "get-user": "get_user_2"}


def test_a_suffix_never_takes_an_identifier_another_name_owns() -> None:
    idents = assign_identifiers(["a-b", "a_b", "a_b_2"])
    assert idents["a_b"] == "a_b"
    assert idents["a_b_2"] == "a_b_2"
    assert idents["a-b"] == "a_b_3"
    assert len(set(idents.values())) == 3


def test_identifier_assignment_does_not_depend_on_input_order() -> None:
    names = ["x-1", "x_1", "x.1", "x 1", "y"]
    assert assign_identifiers(names) == assign_identifiers(list(reversed(names)))


@pytest.mark.parametrize("server", ["time", "json", "os", "sys", "re", "email", "calendar", "asyncio"])
def test_servers_named_like_stdlib_modules_are_not_bare_globals(server: str) -> None:
    assert global_name(to_identifier(server)) is None


@pytest.mark.parametrize("server", [*sorted(RESERVED_GLOBALS), "print", "len", "open", "list"])
def test_servers_named_like_builtins_or_the_program_api_are_not_bare_globals(server: str) -> None:
    assert global_name(server) is None


@pytest.mark.parametrize("server", ["expenses", "github", "file_system", "weather"])
def test_ordinary_servers_are_bare_globals(server: str) -> None:
    assert global_name(server) == server


def test_runtime_catalog_keeps_stdlib_named_servers_reachable_through_servers_only() -> None:
    tools = [downstream(name, "ping") for name in ("time", "json", "os", "expenses", "file-system")]
    servers = {s["name"]: s for s in build_runtime_catalog(tools)["servers"]}
    for name in ("time", "json", "os"):
        assert servers[name]["global"] is None
        assert servers[name]["attr"] == name
        assert [t["attr"] for t in servers[name]["tools"]] == ["ping"]
    assert servers["expenses"]["global"] == "expenses"
    assert servers["file-system"]["global"] == "file_system"
    assert servers["file-system"]["attr"] == "file_system"


def test_import_of_a_stdlib_module_still_works_next_to_a_server_with_its_name() -> None:
    # Bind the catalog the way the runtime does (globals only where "global" is set), then import.
    catalog = build_runtime_catalog([downstream("time", "get_current_time"), downstream("expenses", "get")])
    namespace: dict[str, object] = {"servers": {s["name"]: object() for s in catalog["servers"]}}
    for server in catalog["servers"]:
        if server["global"]:
            namespace[server["global"]] = namespace["servers"][server["name"]]  # type: ignore[index]
    exec("import time\nresult = time.monotonic() > 0", namespace)
    assert namespace["result"] is True
    assert "expenses" in namespace


def test_tool_identifiers_collide_only_within_one_server() -> None:
    tools = [downstream("a", "get-user"), downstream("a", "get_user"), downstream("b", "get-user")]
    servers = {s["name"]: s for s in build_runtime_catalog(tools)["servers"]}
    assert {t["name"]: t["attr"] for t in servers["a"]["tools"]} == {"get-user": "get_user_2", "get_user": "get_user"}
    assert {t["name"]: t["attr"] for t in servers["b"]["tools"]} == {"get-user": "get_user"}
