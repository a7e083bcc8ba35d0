"""The ``edgensd`` command. Each module in this package defines one (sub)command:

* ``COMMAND``: tuple of words, e.g. ``("train", "speech")``;
* ``add_arguments(parser)``: adds its options;
* ``run(args) -> int``: does the work and returns an exit status;
* its module docstring: the help text (first line = one-line summary).

:mod:`edgensd.cli.main` discovers the modules, so adding a command needs no edit elsewhere.
"""
