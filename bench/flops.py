"""Analytic matmul FLOPs of a (possibly pruned) BERT encoder, forward pass (from `lottery.cost`).

The formula lives in `lottery.cost`, which also costs a model from its actual structure; these
names are re-exported for the bench modules. This docstring is extended with the formula below
because `bench.report` prints it under the results table.
"""

from __future__ import annotations

import inspect

from lottery.cost import encoder_flops, layer_flops, masks_flops

__all__ = ["encoder_flops", "layer_flops", "masks_flops"]

# The summary line above, then the formula: everything after layer_flops' own summary paragraph.
__doc__ = __doc__.splitlines()[0] + "\n\n" + inspect.getdoc(layer_flops).split("\n\n", 1)[1]
