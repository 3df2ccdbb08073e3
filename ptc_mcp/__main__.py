from ptc_mcp.cli import main

raise SystemExit(main())
