"""Presenting downstream tools to the model and to programs (rules and numbers: docs/catalog.md).

- ``build_description``: the text of the ``execute_program`` tool description (convention + catalog).
- ``build_runtime_catalog`` / ``catalog_version`` / ``ToolResolver``: the ``catalog`` the runtime binds, and
  ``"server.tool"`` → ``(server, tool)``.
- ``ToolIndex``: ``tools.search()`` (BM25) and ``tools.describe()``.
- ``check_arguments``: validate a call's arguments against the tool's ``inputSchema`` (``ArgumentError``).
- ``ToolPolicy``: the config's allow/deny globs and ``read_only`` (which looks at tool annotations).
- ``naming``: how names become Python identifiers, and which servers are bare globals.
"""

from ptc_mcp.catalog.description import PRESENTATIONS, Presentation, build_description, choose_presentation
from ptc_mcp.catalog.model import DownstreamTool, ServerFailures, UnknownToolError
from ptc_mcp.catalog.naming import RESERVED_GLOBALS, assign_identifiers, global_name, to_identifier
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.catalog.runtime_catalog import (
    ToolResolver,
    build_runtime_catalog,
    catalog_version,
    resolve,
    split_qualified_name,
)
from ptc_mcp.catalog.search import ToolIndex
from ptc_mcp.catalog.signatures import ToolSignature, tool_signature
from ptc_mcp.catalog.tokens import estimate_tokens, tokenizer_name
from ptc_mcp.catalog.validation import ArgumentError, check_arguments

__all__ = [
    "PRESENTATIONS",
    "RESERVED_GLOBALS",
    "ArgumentError",
    "DownstreamTool",
    "Presentation",
    "ServerFailures",
    "ToolIndex",
    "ToolPolicy",
    "ToolResolver",
    "ToolSignature",
    "UnknownToolError",
    "assign_identifiers",
    "build_description",
    "build_runtime_catalog",
    "catalog_version",
    "check_arguments",
    "choose_presentation",
    "estimate_tokens",
    "global_name",
    "resolve",
    "split_qualified_name",
    "to_identifier",
    "tokenizer_name",
    "tool_signature",
]
