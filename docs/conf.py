"""Sphinx configuration. The configuration and CLI references are generated at build time."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from campaigns import __version__  # noqa: E402
from campaigns.cli import build_parser  # noqa: E402
from campaigns.cli.reference import cli_reference_rst, config_reference_rst  # noqa: E402
from campaigns.core.config import load_schema, with_backends  # noqa: E402
from campaigns.scheduler import registry  # noqa: E402

project = "campaigns"
author = "campaigns developers"
release = version = __version__
extensions: list[str] = []
html_theme = "sphinx_rtd_theme"
html_title = f"campaigns {version}"
exclude_patterns = ["_build"]
nitpicky = True


def _write_generated() -> None:
    out = HERE / "generated"
    out.mkdir(exist_ok=True)
    for name, text in (
        (
            "configuration_reference.rst",
            config_reference_rst(with_backends(load_schema(), registry.names())),
        ),
        ("cli_reference.rst", cli_reference_rst(build_parser())),
    ):
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


_write_generated()
