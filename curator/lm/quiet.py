"""Keep the libraries' own chatter off the command line.

transformers prints a progress bar for every checkpoint it loads ("Loading
weights"), logs advice meant for its API users (pad tokens, generation
flags) and raises deprecation warnings about calls PEFT makes; none of it is
actionable for someone running ``curator``, and in a log file the bars are
noise. The CLI calls :func:`quiet_libraries` once: transformers' logging at
error level unless ``TRANSFORMERS_VERBOSITY`` says otherwise, its progress
bars only on a terminal, and its FutureWarnings hidden. Works whether or not
transformers is imported yet, without importing it.
"""

from __future__ import annotations

import os
import sys
import warnings


def quiet_libraries(progress_bars: bool | None = None) -> None:
    """Apply the settings above; ``progress_bars=None`` shows them when stderr is a terminal."""
    chosen_verbosity = "TRANSFORMERS_VERBOSITY" in os.environ
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    bars = sys.stderr.isatty() if progress_bars is None else progress_bars
    if not bars:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
    if "transformers" in sys.modules:  # already imported: its settings were read; change them at run time
        from transformers.utils import logging

        if not chosen_verbosity:
            logging.set_verbosity_error()
        if not bars:
            logging.disable_progress_bar()
