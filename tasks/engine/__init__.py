"""The import engine: one run's file, fetched, staged, validated and merged into its dataset.

Read `pipeline` first: `import_run` walks a run from top to bottom, one module per step the
file takes (fetch → digest shortcut → first record → stage → validate → merge), each with
its SQL beside its code.
"""

from .pipeline import import_run
from .progress import listen

__all__ = ["import_run", "listen"]
