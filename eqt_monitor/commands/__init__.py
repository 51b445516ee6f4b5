"""One module per ``eqt-monitor`` sub-command.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. ``cli.py`` discovers them from ``COMMANDS`` below; keep the modules
thin: parse, call the library, print.
"""

COMMANDS = [
    "models",
    "evaluate",
    "train",
    "compare",
    "experiment",
    "replay",
    "run",
    "simulate",
    "export",
    "serve",
    "plot",
    "qc",
]
