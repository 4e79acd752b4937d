"""The integer form of a prior: which of its networks run in exact integer arithmetic, layer by
layer (Balle, Johnston & Minnen, ICLR 2019; the arithmetic is `jahp_jax.coding.integer`).

Everything that sets a probability runs on both sides of the coder: the hyper synthesis, the
context models, the conditioning and entropy-parameter networks, the latent residual prediction.
Each part names those networks (`prior_path_networks`); a network has an integer form when it is
a masked context conv, or an `nn.Sequential` of stride-1 convs, 1x1 convs and stride-2 transposed
convs with ReLU / LeakyReLU / nothing after each. Anything else (attention, a mixture density, a
learned factorized density for y) has none, and `integer_networks` says so in one line.
"""

from __future__ import annotations

import dataclasses

from flax import linen as nn

from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.nn.layers import Conv, ConvTranspose, MaskedConv, leaky_relu


class IntegerFormError(ValueError):
    """A model whose prior path has no integer form (the message names the part)."""


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One integer layer: `name` its params' key in the network (None: the network's own params),
    `kind` 'deconv' (k x k transposed conv, stride 2), 'conv' (k x k, stride 1), 'dense' (1x1)
    or 'context' (the masked 5x5 conv, applied to gathered windows), `activation` 'relu',
    'leaky' or 'none'."""

    name: str | None
    kind: str
    activation: str


_ACTIVATIONS = {nn.relu: "relu", leaky_relu: "leaky"}


def layer_specs(name: str, module: nn.Module) -> tuple[LayerSpec, ...]:
    """The integer layers of network `name` (an unbound module); IntegerFormError otherwise."""
    if isinstance(module, MaskedConv):
        return (LayerSpec(None, "context", "none"),)
    if not isinstance(module, nn.Sequential):
        raise IntegerFormError(f"network '{name}' ({type(module).__name__}) is not a conv stack")
    specs: list[LayerSpec] = []
    for index, layer in enumerate(module.layers):
        # By identity: a layer may be a module, which cannot be hashed (a nested Sequential).
        activation = next((v for k, v in _ACTIVATIONS.items() if layer is k), None)
        if activation is not None:
            if not specs or specs[-1].activation != "none":
                raise IntegerFormError(f"network '{name}': an activation must follow a conv")
            specs[-1] = dataclasses.replace(specs[-1], activation=activation)
        elif isinstance(layer, ConvTranspose) and layer.stride == 2:
            specs.append(LayerSpec(f"layers_{index}", "deconv", "none"))
        elif isinstance(layer, Conv) and layer.stride == 1:
            kind = "dense" if layer.kernel_size == 1 else "conv"
            specs.append(LayerSpec(f"layers_{index}", kind, "none"))
        else:
            what = getattr(layer, "__name__", type(layer).__name__)
            raise IntegerFormError(f"network '{name}', layer {index} ({what}) has none")
    return tuple(specs)


def integer_networks(composition) -> dict[str, tuple[LayerSpec, ...]]:
    """Every prior-path network of a composition and its integer layers, by parameter name;
    IntegerFormError (one line) when a part has no integer form."""
    density = composition.density
    if density is None:
        raise IntegerFormError("its y density is a learned factorized density")
    if not isinstance(density, GaussianConditional):
        components = getattr(density, "num_components", "?")
        raise IntegerFormError(
            f"it needs one Gaussian (K=1), this model has K={components} mixture components"
        )
    names: list[str] = []
    for part in (composition.side, composition.conditioning, composition.spatial,
                 composition.parameters, composition.residual):  # fmt: skip
        if part is not None:
            names += part.prior_path_networks(composition)
    modules = _expanded(composition.modules())
    return {name: layer_specs(name, modules[name]) for name in names}


def has_integer_form(composition) -> bool:
    """Whether every prior-path network of `composition` has an integer form."""
    try:
        integer_networks(composition)
    except IntegerFormError:
        return False
    return True


def _expanded(modules: dict) -> dict[str, nn.Module]:
    """Lists of networks -> `name_<k>` entries (Flax's naming of module lists)."""
    flat = {}
    for name, module in modules.items():
        if isinstance(module, list | tuple):
            flat.update({f"{name}_{k}": m for k, m in enumerate(module)})
        else:
            flat[name] = module
    return flat
