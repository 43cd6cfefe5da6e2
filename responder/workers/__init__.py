"""`responder serve --workers N`: N worker processes on one callback port, one supervisor.

The supervisor (supervisor.py) owns what must exist once: the port check, the admin port (its
/metrics label every worker's samples, /-/status lists them), the pid file, the signals and the
reloads, which give every worker the same rules file. Each worker is an ordinary `responder
serve` process that shares the port through SO_REUSEPORT and answers the supervisor on a Unix
socket (control.py). Workers share state through the configured backend, so N > 1 needs
`state.backend: redis`.
"""
