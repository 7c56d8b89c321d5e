"""Which weights magnitude pruning may remove, named by role.

A role is one of the paper's BERT module names (`attention.self.query`, ..., `output.dense`); each
model family maps it to its own linears (`lottery.architectures`: a decoder's q_proj ... down_proj,
ModernBERT's fused Wqkv, ...), so one setting serves every family.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from lottery.architectures import ATTENTION_ROLES, MLP_OUTPUT, MLP_ROLES, Family
from lottery.errors import ConfigError
from lottery.models import encoder_layers, model_family

# The paper's BERT names, used as roles: every family maps each to its own linears.
ELIGIBLE_ROLES = ATTENTION_ROLES + MLP_ROLES
# The paper (and the authors' code) leaves the FFN output bias out: it is added after the block,
# so pruning it would shift every token's residual stream rather than remove a connection.
UNPRUNED_BIASES = (MLP_OUTPUT,)


def _module_paths(family: Family, config, roles: Iterable[str]) -> list[str]:
    """Module paths inside a layer for `roles`, in order, each once: a role (`ELIGIBLE_ROLES`)
    stands for the family's linears that play it, anything else is a path inside the layer.

    A fused linear (ModernBERT's Wqkv plays query, key and value) is eligible only as a whole:
    asking for some of its roles but not all is an error."""
    roles = list(roles)
    played = family.roles(config)
    players: dict[str, list[str]] = {}
    for role, paths in played.items():
        for path in paths:
            players.setdefault(path, []).append(role)
    paths: list[str] = []
    for role in roles:
        for path in played.get(role, (role,)):
            missing = [other for other in players.get(path, []) if other not in roles]
            if missing:
                raise ConfigError(f"the {family.name} family's `{path}` plays {players[path]} together (a fused "
                                  f"linear): select all of them or none, not only {[r for r in players[path] if r in roles]}")
            if path not in paths:
                paths.append(path)
    return paths


def layer_parameter_names(
    model: nn.Module, roles: Iterable[str], include_biases: bool, unpruned_biases: Iterable[str]
) -> list[dict[str, str]]:
    """Per encoder layer: {"<path>.weight" / "<path>.bias": the model's parameter name}, the paths
    being the family's modules for `roles` (`_module_paths`)."""
    family = model_family(model)
    name_of = {id(p): n for n, p in model.named_parameters()}
    played = family.roles(model.config)
    unpruned = {path for role in unpruned_biases for path in played.get(role, (role,))}
    paths = _module_paths(family, model.config, roles)
    per_layer = []
    for layer in encoder_layers(model):
        names = {}
        for path in paths:
            module = layer.get_submodule(path)
            names[f"{path}.weight"] = name_of[id(module.weight)]
            if include_biases and path not in unpruned and getattr(module, "bias", None) is not None:
                names[f"{path}.bias"] = name_of[id(module.bias)]
        per_layer.append(names)
    return per_layer


def eligible_parameters(
    model: nn.Module,
    include_biases: bool = True,
    roles: Iterable[str] = ELIGIBLE_ROLES,
    unpruned_biases: Iterable[str] = UNPRUNED_BIASES,
) -> dict[str, nn.Parameter]:
    """The parameters magnitude pruning may remove, by `named_parameters` name, in layer order.

    Default (docs/METHOD.md, "Magnitude pruning"): in every encoder layer, the weights of Q, K, V,
    attention-output, intermediate and output dense layers and their biases except
    `output.dense.bias`. Embeddings, pooler, classifier and norms are never eligible. `roles` are the paper's BERT names (`ELIGIBLE_ROLES`,
    mapped to the model family's linears: e.g. a decoder's intermediate.dense is gate_proj and
    up_proj, its output.dense down_proj; DeBERTa's query and key include the relative-position
    projections pos_query_proj / pos_key_proj when they are not shared) or module paths inside a
    layer; `unpruned_biases` likewise.
    """
    params = dict(model.named_parameters())
    names = layer_parameter_names(model, tuple(roles), include_biases, tuple(unpruned_biases))
    return {name: params[name] for layer in names for name in layer.values()}


def snapshot_cpu(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, Tensor]:
    """Detached CPU clones of the named parameters (default: the eligible ones), e.g. to rewind to."""
    params = dict(model.named_parameters())
    chosen = eligible_parameters(model).keys() if names is None else names
    return {name: params[name].detach().to("cpu", copy=True) for name in chosen}

