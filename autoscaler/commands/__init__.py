"""One module per CLI command: ``add_arguments(parser)`` and ``run(args) -> int``.

A command's own logic lives in its module (``replay``: timelines and the open-loop replay;
``explain``: one live decision). :mod:`.printer` is the decision output shared by ``run --dry-run``
and ``demo``.
"""
