"""The shared stores of the session map (``ptc_mcp.remote.session_map``): SQLite, Redis, DynamoDB."""
