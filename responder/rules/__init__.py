"""rules.yaml, from bytes on disk to an immutable, compiled snapshot.

`files` reads the file as it really changes, `yamldoc` parses it keeping positions, `schema`
validates it (and holds every default), `compile` builds the `model` (Rule, RuleSet), `load` is
the one loader for serve, check and reload, and `store` swaps snapshots and tells subscribers.
"""
