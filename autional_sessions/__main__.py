from autional_sessions.cli import main

raise SystemExit(main())
