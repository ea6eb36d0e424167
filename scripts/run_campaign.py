#!/usr/bin/env python3
"""Thin shim: `python scripts/run_campaign.py COMMAND CONFIG ...` is `run-campaign`."""
from campaigns.cli import main

raise SystemExit(main())
