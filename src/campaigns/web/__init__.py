"""The read-only web dashboard (`run-campaign serve`): an ASGI app (Starlette, uvicorn).

An entry point beside `campaigns.cli`, independent of it: the CLI reaches it by name
(`campaigns.web.server:serve`). It needs the `web` extra; nothing here imports Starlette
until `serve` has checked that it is installed.
"""
