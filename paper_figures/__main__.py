"""`python -m paper_figures --out DIR [--quick] [--only a,b]` (same as `theory-lab figures`)."""

import sys

from paper_figures.cli import run

sys.exit(run())
