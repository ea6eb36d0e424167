"""The parameter space most test campaigns share: `n` realizations times two redshifts.

Campaign templates are format strings (`{{` for a literal brace), so this is one too:
`campaign_head("Name", "v1")` + the rest of a template, then `.format(n=..., ...)`.
"""

from __future__ import annotations


def campaign_head(name: str, version: str) -> str:
    """The `campaign` and `parameters` sections of a template over realization x redshift."""
    return (
        f'campaign: {{{{name: "{name}", version: "{version}", machine: local}}}}\n'
        "parameters:\n"
        "  realization: {{range: [0, {n}]}}\n"
        "  redshift: [1.0, 2.0]\n"
    )
