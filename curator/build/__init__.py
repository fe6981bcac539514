"""``curator build``: a recipe's filters over a candidate table, written as curated and rejected rows.

The config is :class:`Recipe` (read by :func:`load_recipe`), the entry point
:func:`run_build`, the result :class:`BuildResult`.
"""

from __future__ import annotations

from curator.build.recipe import Recipe, Step, load_recipe, parse_recipe
from curator.build.run import BuildResult, run_build

__all__ = ["BuildResult", "Recipe", "Step", "load_recipe", "parse_recipe", "run_build"]
