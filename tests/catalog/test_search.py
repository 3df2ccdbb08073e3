from __future__ import annotations

import pytest

from ptc_mcp.bench.synthetic import SEARCH_QUERIES, synthetic_tools
from ptc_mcp.catalog.model import UnknownToolError
from ptc_mcp.catalog.search import ToolIndex, tokenize

from .helpers import downstream

INDEX = ToolIndex(synthetic_tools(1000))


def test_tokenizer_splits_snake_camel_and_kebab_case() -> None:
    assert tokenize("getUserProfile") == ["get", "user", "profil"]
    assert tokenize("list_open-PRs HTTPServer") == ["list", "open", "pr", "http", "server"]


def test_tokenizer_gives_word_forms_one_stem_and_drops_stop_words() -> None:
    assert len({*tokenize("create created creates creating")}) == 1
    assert tokenize("queue queued queues") == tokenize("queue") * 3
    assert tokenize("Invoices and payments") == tokenize("invoice payment")
    assert tokenize("running ads") == tokenize("run ad")
    assert tokenize("the DNS records of my zones") == ["dns", "record", "zone"]


def test_everyday_verbs_and_phrases_find_the_verbs_tool_names_use() -> None:
    index = ToolIndex(
        [
            downstream("notes", "create_note", description="Create a note."),
            downstream("notes", "delete_note", description="Delete a note."),
            downstream("notes", "count_notes", description="Count notes."),
            downstream("notes", "get_note", description="Get a note by id."),
        ]
    )
    assert index.search("jot down a quick note", limit=1)[0]["name"] == "notes.create_note"
    assert index.search("get rid of that note", limit=1)[0]["name"] == "notes.delete_note"
    assert index.search("how many notes do I have", limit=1)[0]["name"] == "notes.count_notes"
    assert index.search("look up note 7", limit=1)[0]["name"] == "notes.get_note"


def test_enum_values_and_file_names_count_as_search_words() -> None:
    index = ToolIndex(
        [
            downstream("maps", "directions", properties={"mode": {"type": "string", "enum": ["driving", "walking"]}}),
            downstream("fs", "read_file", properties={"path": {"type": "string"}}, description="Read a file."),
            downstream("docs", "read_document", description="Read a document."),
        ]
    )
    assert index.search("walk to the station")[0]["name"] == "maps.directions"
    assert index.search("read config.yaml", limit=1)[0]["name"] == "fs.read_file"
    assert index.search("what is in /etc/hosts", limit=1)[0]["name"] == "fs.read_file"


def test_search_finds_the_expected_tool_in_the_top_three_for_most_queries() -> None:
    assert len(SEARCH_QUERIES) >= 50
    hits, misses = 0, []
    for query, expected in SEARCH_QUERIES:
        names = [result["name"] for result in INDEX.search(query, limit=3)]
        if expected in names:
            hits += 1
        else:
            misses.append((query, expected, names))
    rate = hits / len(SEARCH_QUERIES)
    print(f"search top-3 hit rate: {rate:.2%} over {len(SEARCH_QUERIES)} queries; misses: {misses}")
    assert rate >= 0.9


def test_search_results_carry_name_call_summary_and_signature() -> None:
    results = INDEX.search("current time in a timezone", limit=2)
    assert results[0] == {
        "name": "time.get_current_time",
        "call": "servers.time.get_current_time",
        "summary": "Get the current time in a specific timezone. [read-only]",
        "signature": "(*, timezone: str) -> Any",
    }
    assert len(results) == 2


def test_search_is_deterministic_and_honours_the_limit() -> None:
    assert INDEX.search("list invoices", limit=7) == INDEX.search("list invoices", limit=7)
    assert len(INDEX.search("list", limit=7)) == 7
    assert INDEX.search("list", limit=0) == []
    assert INDEX.search("zzzqqq nothing like this") == []


def test_an_exact_tool_name_ranks_first() -> None:
    assert INDEX.search("postgres.query")[0]["name"] == "postgres.query"


def test_describe_is_compact_by_default_and_gives_the_schemas_when_asked() -> None:
    described = INDEX.describe("expenses.get_expenses")
    assert described["name"] == "expenses.get_expenses"
    assert described["call"] == "expenses.get_expenses"
    assert described["signature"].startswith("(*, employee_id: str")
    assert described["summary"].startswith("Return the expense line items")
    assert described["arguments"][0] == {
        "name": "employee_id",
        "type": "str",
        "required": True,
        "description": described["arguments"][0]["description"],
    }
    assert described["annotations"] == {"readOnlyHint": True}
    assert "input_schema" not in described and "output_schema" not in described
    full = INDEX.describe("expenses.get_expenses", schemas=True)
    assert full["input_schema"]["required"] == ["employee_id", "quarter"]
    assert full["output_schema"]["type"] == "object"


def test_describe_accepts_identifier_names() -> None:
    index = ToolIndex([downstream("file-system", "read-file", description="Read.")])
    assert index.describe("file_system.read_file")["name"] == "file-system.read-file"


def test_describe_of_an_unknown_tool_suggests_close_names() -> None:
    with pytest.raises(LookupError) as caught:
        INDEX.describe("github.merge_pullrequest")
    assert isinstance(caught.value, UnknownToolError)
    assert caught.value.suggestions[0] == "github.merge_pull_request"


def test_an_empty_index_finds_nothing() -> None:
    index = ToolIndex([])
    assert index.search("anything") == []
    with pytest.raises(UnknownToolError):
        index.describe("a.b")
