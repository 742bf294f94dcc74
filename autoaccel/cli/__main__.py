"""``python -m autoaccel.cli``: the ``autoaccel`` command."""

from autoaccel.cli import main

raise SystemExit(main())
