"""Global L1 magnitude pruning of the encoder's weights ("m-pruning"), mirroring the structured side:

    eligibility   which weights may be pruned, named by role (the paper's BERT module names)
    masks         `WeightMasks` (a bool keep-mask per parameter) and their .npz file format
    selection     exactly k entries with the smallest magnitude, globally
    search        one global pruning step, and the paper's search loop (`MagnitudeSearch`)
    tickets       good / random / bad weight tickets
    rewinding     survivors back to their pre-trained values (iterative magnitude pruning)
    accounting    how much each layer, tensor, attention unit and MLP keeps

Everything here is a pure function of tensors, except `WeightMasks.save` and the in-place
`WeightMasks.apply_` / `rewind_`, which say so in their names.
"""

from lottery.magnitude.accounting import sparsity_report
from lottery.magnitude.eligibility import ELIGIBLE_ROLES, UNPRUNED_BIASES, eligible_parameters, snapshot_cpu
from lottery.magnitude.masks import MASK_FILE_FORMAT, WeightMasks, load_weight_masks
from lottery.magnitude.rewinding import rewind_
from lottery.magnitude.search import EXIT_MASKS, MagnitudeSearch, global_magnitude_step
from lottery.magnitude.tickets import bad_weight_ticket, random_weight_ticket

__all__ = [
    "ELIGIBLE_ROLES", "EXIT_MASKS", "MASK_FILE_FORMAT", "UNPRUNED_BIASES", "MagnitudeSearch", "WeightMasks",
    "bad_weight_ticket", "eligible_parameters", "global_magnitude_step", "load_weight_masks", "random_weight_ticket",
    "rewind_", "snapshot_cpu", "sparsity_report",
]
