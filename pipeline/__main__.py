"""`python -m pipeline` is the same command line as `edgeport`."""

from pipeline.cli import main

raise SystemExit(main())
