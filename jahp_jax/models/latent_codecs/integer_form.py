"""The integer form of a prior: which of its networks run in exact integer arithmetic, layer by
layer (Balle, Johnston & Minnen, ICLR 2019; the arithmetic is `jahp_jax.coding.integer`).

Everything that sets a probability runs on both sides of the coder: the hyper synthesis, the
context models, the conditioning and entropy-parameter networks, the latent residual prediction.
Each part names those networks (`prior_path_networks`); a network has an integer form when it is
a masked context conv, or an `nn.Sequential` (nested ones included) of stride-1 convs with odd
kernels, 1x1 convs, stride-2 transposed convs, stride-1 transposed convs with odd kernels and
sub-pixel convs (a stride-1 conv followed by `pixel_shuffle` x2), with ReLU / LeakyReLU / nothing
after each. Anything else (attention, GDN/IGDN, a residual block, a mixture density, a learned
factorized density for y) has none, and `integer_networks` says so in one line.
"""

from __future__ import annotations

import dataclasses
import functools

from flax import linen as nn

from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.nn.blocks import pixel_shuffle
from jahp_jax.nn.layers import Conv, ConvTranspose, MaskedConv, leaky_relu


class IntegerFormError(ValueError):
    """A model whose prior path has no integer form (the message names the part)."""


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One integer layer: `name` the path of its params in the network, '/' between the keys of
    nested Sequentials (e.g. 'layers_2/layers_0'; None: the network's own params), `kind` one
    of LAYER_KINDS, `activation` 'relu', 'leaky' or 'none' (applied before a sub-pixel conv's
    shuffle: the two commute)."""

    name: str | None
    kind: str
    activation: str


LAYER_KINDS = {  # kind -> what it is (every stride-1 kind has an odd k and padding k // 2)
    "deconv": "k x k transposed conv, stride 2 (output 2h x 2w)",
    "conv": "k x k conv, stride 1",
    "dense": "1x1 conv",
    "transposed": "k x k transposed conv, stride 1: a conv with the flipped, transposed kernel",
    "subpel": "k x k conv, stride 1, to 4C channels, then pixel shuffle x2 (output 2h x 2w x C)",
    "context": "the masked conv of a context model, applied to gathered windows",
}
TRANSPOSED_KINDS = ("deconv", "transposed")  # kernels stored (k, k, O, I)
SHUFFLE_UPSCALE = 2  # the pixel shuffle's factor that 'subpel' layers have

_ACTIVATIONS = {nn.relu: "relu", leaky_relu: "leaky"}


def layer_specs(name: str, module: nn.Module) -> tuple[LayerSpec, ...]:
    """The integer layers of network `name` (an unbound module); IntegerFormError otherwise."""
    if isinstance(module, MaskedConv):
        return (LayerSpec(None, "context", "none"),)
    if not isinstance(module, nn.Sequential):
        raise IntegerFormError(f"network '{name}' ({type(module).__name__}) is not a conv stack")
    return tuple(_stack_specs(name, module, ""))


def _stack_specs(name: str, module: nn.Sequential, prefix: str) -> list[LayerSpec]:
    """The layers of a Sequential whose params live under `prefix` ('' or 'layers_<i>/...'),
    nested Sequentials flattened into the stack."""
    specs: list[LayerSpec] = []
    for index, layer in enumerate(module.layers):
        path = f"{prefix}layers_{index}"
        position = path.replace("layers_", "").replace("/", ".")  # '2', or '2.1' when nested
        where = f"network '{name}', layer {position}"
        # By identity: a layer may be a module, which cannot be hashed (a nested Sequential).
        activation = next((v for k, v in _ACTIVATIONS.items() if layer is k), None)
        upscale = _shuffle_upscale(layer)
        if activation is not None:
            if not specs or specs[-1].activation != "none":
                raise IntegerFormError(f"{where}: an activation must follow a conv")
            specs[-1] = dataclasses.replace(specs[-1], activation=activation)
        elif upscale is not None:
            follows_conv = specs and specs[-1].kind in ("conv", "dense")
            if upscale != SHUFFLE_UPSCALE or not follows_conv or specs[-1].activation != "none":
                raise IntegerFormError(
                    f"{where}: only a pixel shuffle x{SHUFFLE_UPSCALE} right after a stride-1 "
                    "conv has one"
                )
            specs[-1] = dataclasses.replace(specs[-1], kind="subpel")
        elif isinstance(layer, nn.Sequential):
            specs += _stack_specs(name, layer, f"{path}/")
        elif isinstance(layer, ConvTranspose) and layer.stride == 2:
            specs.append(LayerSpec(path, "deconv", "none"))
        elif isinstance(layer, Conv | ConvTranspose) and layer.stride == 1:
            if layer.kernel_size % 2 == 0:
                raise IntegerFormError(f"{where}: an even kernel ({layer.kernel_size}) has none")
            if isinstance(layer, ConvTranspose):
                kind = "transposed"
            else:
                kind = "dense" if layer.kernel_size == 1 else "conv"
            specs.append(LayerSpec(path, kind, "none"))
        else:
            named = layer.func if isinstance(layer, functools.partial) else layer
            what = getattr(named, "__name__", type(named).__name__)
            raise IntegerFormError(f"{where} ({what}) has none")
    return specs


def _shuffle_upscale(layer) -> int | None:
    """The factor of a `pixel_shuffle` layer (`functools.partial(pixel_shuffle, upscale=r)`),
    None for any other layer."""
    if isinstance(layer, functools.partial) and layer.func is pixel_shuffle:
        return layer.keywords.get("upscale")
    return None


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
