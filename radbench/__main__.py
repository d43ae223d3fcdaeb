"""``python -m radbench`` is the same as the ``radbench`` console script (torchrun needs ``-m``)."""

from radbench.cli import main

raise SystemExit(main())
