"""The command line: `run-campaign COMMAND CONFIG [options]`: parse, call the manager, render."""

from campaigns.cli.main import main
from campaigns.cli.parser import build_parser

__all__ = ["build_parser", "main"]
