"""Run the command line as ``python -m autoscaler``."""

from __future__ import annotations

from autoscaler.cli import main

raise SystemExit(main())
