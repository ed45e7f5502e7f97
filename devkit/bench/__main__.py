"""``python -m devkit.bench``: run the benchmarks (``--quick`` for a smoke run)."""

from devkit.bench.cli import main

raise SystemExit(main())
