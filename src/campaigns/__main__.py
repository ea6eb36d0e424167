"""`python -m campaigns COMMAND CONFIG ...` is `run-campaign`."""

from campaigns.cli import main

raise SystemExit(main())
