"""Write the reference's quantized symbols of the follow-up golden cases (tests/data/followups/).

The golden cases (../shared/golden/followups) hold each reference's weights, input, y and forward
outputs, but not the integers its eval-mode forward pass rounded y and z to. A test that rebuilds
that forward pass from our networks needs them: recomputing round(y - mean) from our own means
would flip an element whose y - mean lies within float rounding of a half. This script runs the
references on the golden weights and input and saves, per case, `<case>.symbols.npz` with

- `q_z` (int8, NCHW): round(z - medians), read from the input of h_s (h_mean_s for TCM);
- `q_y` (int8, NCHW): round(y - means), read from each call of the Gaussian conditional (per
  channel group for ELIC, per slice for TCM), concatenated in y's channel order;

and prints the reference's forward pass against the golden outputs (a check that the weights
loaded into the right model). The reference code is not in this repository: CompressAI 1.2.8 from
PyPI and the authors' TCM (`models/tcm.py` of github.com/jmliu206/LIC_TCM, MIT), given by path.

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch einops compressai==1.2.8
    /tmp/refvenv/bin/python tests/data/followups/make_symbols.py \\
        --golden ../shared/golden/followups --tcm /path/to/LIC_TCM/models/tcm.py

torchvision and timm are not needed: CompressAI imports torchvision only for its registry of data
transforms and TCM imports timm only for a weight initialiser, so the script puts stand-ins for
both in `sys.modules` before importing them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

ELIC_GROUPS = [4, 4, 8, 16, 32]
CASES = {
    "cheng2020-anchor_N32": ("Cheng2020Anchor", {"N": 32}),
    "cheng2020-attn_N32": ("Cheng2020Attention", {"N": 32}),
    "cheng2020-anchor-checkerboard_N32": ("Cheng2020AnchorCheckerboard", {"N": 32}),
    "elic2022-official_N32_M64": ("Elic2022Official", {"N": 32, "M": 64, "groups": ELIC_GROUPS}),
    "elic2022-chandelier_N32_M64": (
        "Elic2022Chandelier",
        {"N": 32, "M": 64, "groups": ELIC_GROUPS},
    ),
    "tcm_N32_M320": (
        "TCM",
        {"config": [2, 2, 2, 2, 2, 2], "head_dim": [8, 16, 32, 32, 16, 8], "N": 32, "M": 320},
    ),
}


def _stand_ins() -> None:
    """Empty torchvision.transforms (CompressAI's registry lists its classes) and timm's two
    layer helpers (TCM builds DropPath only for a drop-path rate above 0)."""
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    sys.modules.update(
        {"torchvision": torchvision, "torchvision.transforms": torchvision.transforms}
    )
    layers = types.ModuleType("timm.models.layers")
    layers.trunc_normal_ = torch.nn.init.trunc_normal_

    class DropPath(torch.nn.Module):
        def __init__(self, rate: float):
            raise NotImplementedError("the golden TCM has drop_path_rate 0")

    layers.DropPath = DropPath
    timm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
    timm.models, models.layers = models, layers
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def _model(name: str, kwargs: dict, tcm_path: Path) -> torch.nn.Module:
    if name == "TCM":
        spec = importlib.util.spec_from_file_location("lic_tcm", tcm_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.TCM(**kwargs)
    import compressai.models

    return getattr(compressai.models, name)(**kwargs)


def _hyper_synthesis(model: torch.nn.Module) -> torch.nn.Module:
    if hasattr(model, "h_mean_s"):
        return model.h_mean_s
    if hasattr(model, "latent_codec"):
        return model.latent_codec["hyper"].h_s
    return model.h_s


def _bottleneck(model: torch.nn.Module) -> torch.nn.Module:
    if hasattr(model, "latent_codec"):
        return model.latent_codec["hyper"].entropy_bottleneck
    return model.entropy_bottleneck


def _symbols(values: torch.Tensor) -> np.ndarray:
    rounded = torch.round(values).detach().numpy()
    if np.abs(rounded).max() > 127:
        raise SystemExit("a symbol does not fit int8")
    return rounded.astype(np.int8)


def run_case(case: str, golden: Path, tcm_path: Path, out_dir: Path) -> None:
    name, kwargs = CASES[case]
    arrays = np.load(golden / f"{case}.npz")
    state = {
        key[len("param/") :]: torch.from_numpy(arrays[key])
        for key in arrays.files
        if key.startswith("param/")
    }
    model = _model(name, kwargs, tcm_path)
    model.load_state_dict(state)
    model.eval()

    y_parts, z_parts = [], []

    def on_conditional(_module, args, kwargs, _output):
        inputs, _scales = args[:2]
        means = args[2] if len(args) > 2 else kwargs["means"]
        y_parts.append(_symbols(inputs - means))

    def on_hyper_synthesis(_module, args, _output):
        medians = _bottleneck(model)._get_medians()
        z_parts.append(_symbols(args[0] - medians))

    for module in model.modules():
        if type(module).__name__ == "GaussianConditional":
            module.register_forward_hook(on_conditional, with_kwargs=True)
    _hyper_synthesis(model).register_forward_hook(on_hyper_synthesis)
    with torch.no_grad():
        out = model(torch.from_numpy(arrays["input/x"]))
    (q_z,) = z_parts
    q_y = np.concatenate(y_parts, axis=1)
    outputs = {
        "x_hat": out["x_hat"],
        **{f"likelihoods_{key}": value for key, value in out["likelihoods"].items()},
    }
    report = {
        key: float(np.abs(value.numpy() - arrays[f"output/forward_{key}"]).max())
        for key, value in outputs.items()
    }
    np.savez_compressed(out_dir / f"{case}.symbols.npz", q_y=q_y, q_z=q_z)
    print(case, "q_y", q_y.shape, "q_z", q_z.shape, "max |reference - golden|:", json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--golden", type=Path, required=True, help="shared/golden/followups")
    parser.add_argument("--tcm", type=Path, required=True, help="LIC_TCM's models/tcm.py")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    _stand_ins()
    torch.manual_seed(0)
    for case in CASES:
        run_case(case, args.golden, args.tcm, args.out)


if __name__ == "__main__":
    main()
