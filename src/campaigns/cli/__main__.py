"""`python -m campaigns.cli` is `run-campaign`."""

from campaigns.cli.main import main

raise SystemExit(main())
