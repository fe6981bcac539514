"""``curator eval``: accuracy of a model (and adapter) on a test set, four ways.

- ``greedy``: one completion with sampling off.
- ``self-consistency``: n samples at temperature T, majority vote.
- ``weighted``: votes weighted by length-normalised sequence probability.
- ``ranked`` (ASC): votes weighted by ``c0 + c1·s`` from a ranker's score.

Generation goes through the same backends as ``curator generate``, so a
vLLM server (``--base-url``) makes evaluation fast. Importing this package
does not import torch.
"""

from __future__ import annotations
