"""Entry point: python -m deploy VERB [options] [-- pytest args]."""

from deploy.cli import main

raise SystemExit(main())
