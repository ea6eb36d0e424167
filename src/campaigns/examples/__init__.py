"""Example payloads that campaigns can sweep over (small, real, reproducible programs)."""
