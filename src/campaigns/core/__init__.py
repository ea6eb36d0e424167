"""The pure core: values and decisions, from a campaign file to arrays and retry verdicts.

Nothing here runs SQL, starts a process or draws on a terminal; the clock, random
draws and paths are passed in. Reading the two YAML files (`config.load_campaign`)
is the only I/O, beside the pure `config.build_spec` that tests call with strings.
"""
