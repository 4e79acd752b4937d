"""The latent coder: z, then y step by step over the prior's schedule, one loop for every prior
and for both arithmetics.

Symbols. Every latent is coded as an integer symbol relative to an offset both sides know:
z as round(z - median), y as round(y - mu) (mu = the predicted mean, the mixture mean for a
mixture, the median for the factorized prior, 0 for the scale hyperprior). The dequantized value
is symbol + offset, so a decoder never depends on mu being bit-identical to the encoder's for the
*symbol*; it does for y_hat of the context priors, which is why both sides compute mu through
the same compiled code.

The loop (`LatentCoder._code_y`), identical on both sides: for each channel group, its features
from the hyper features and the groups decoded so far (`group_features`); for each step of the
group, the step's inputs gathered from the decoded y_hat so far (a zero-padded numpy buffer) ->
its distribution -> its symbols coded -> y_hat written back; after the group, latent residual
prediction where the prior has it. A **backend** computes the features, distributions and
corrections: `FloatBackend` with the model's jitted float functions (files decode where the
float arithmetic matches), `IntegerBackend` with the exact integer arithmetic of
`jahp_jax.coding.integer` (files decode bit-exactly on any machine). The encoder fills its buffer
exactly as the decoder does, so both feed bit-identical inputs to the same computation.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any

import jax
import numpy as np

from jahp_jax.coding.integer import (
    ACTIVATION_LIMIT,
    ONE,
    IntegerPrior,
    IntegerPriorError,
    compiled_functions,
    information_bits,
    split_params,
)
from jahp_jax.coding.range_coder import (
    CURRENT_RULES,
    ChannelTables,
    CodingRules,
    check_exhausted,
    code_step,
    decode_symbols,
    encode_symbols,
    factorized_tables,
    gaussian_tables,
    new_decoder,
    new_encoder,
    scale_levels,
    stream_bytes,
    table_family,
)
from jahp_jax.models.compression_model import CompressionModel, latent_codec_params
from jahp_jax.models.config import HYPER_DOWNSAMPLING
from jahp_jax.models.latent_codecs.parts import GroupFeatures


@dataclasses.dataclass
class CodedLatents:
    """What the encoder produced: the two streams, the coded latents, the estimated rate."""

    z_stream: bytes
    y_stream: bytes
    y_hat: np.ndarray  # (h, w, M) float32, exactly what the decoder reconstructs
    z_hat: np.ndarray | None  # (h/4, w/4, Z) float32
    y_distribution: dict[str, np.ndarray]  # (h, w, [K,] M) the parameters the coder used
    bits_y: float  # sum of -log2 likelihood under the coder's (unsnapped) distribution
    bits_z: float


def _to_host(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


class FloatBackend:
    """The prior path in float32 through the model's jitted functions (`programs`); its tables
    as `rules` say (today's unless decoding a file of an earlier format version)."""

    dtype = np.float32

    def __init__(self, model: CompressionModel, params: dict, rules: CodingRules = CURRENT_RULES):
        self.model = model
        self.params = latent_codec_params(params)  # all that the coder's functions read
        self.codec = model.make_latent_codec()
        self.rules = rules
        self.functions = compiled_functions(model)
        self.constants = self.functions["coding_constants"](self.params)  # once, for every step
        densities = {name: np.asarray(value) for name, value in model.apply(
            {"params": self.params}, method=_density_quantiles).items()}  # fmt: skip
        self.density_tables = {}
        for name in ("z", "y"):  # a fixed order for the checksum
            if name in densities:
                self.density_tables[name] = factorized_tables(
                    densities[name], self._density_likelihood(name), rules.floor
                )
        y_tables = self.density_tables["y"][0] if "y" in self.density_tables else None
        self.y_family = table_family(self.codec.conditional, y_tables, rules.floor)
        tables = [gaussian_tables(rules.floor)]
        tables += [tables for tables, _ in self.density_tables.values()]
        self.table_checksum = functools.reduce(
            lambda crc, t: zlib.crc32(t.checksum().to_bytes(4, "little"), crc), tables, 0
        )

    def _density_likelihood(self, name: str):
        """The likelihood of the factorized density `name` ('z' or 'y') its tables are built
        from: jitted, or evaluated op by op (`CodingRules.eager_density_tables`)."""
        if not self.rules.eager_density_tables:
            return functools.partial(self.functions[f"{name}_density_likelihood"], self.params)
        return lambda values: self.model.apply(
            {"params": self.params},
            values,
            method=lambda m, x: m.latent_codec.factorized_densities()[name].likelihood(x),
        )

    # --- z --------------------------------------------------------------------------------------
    def code_z(self, coder, shape: tuple[int, ...], y: np.ndarray | None, z=None):
        """Encoder (y given): z (default h_a(y)) coded around the medians -> (z_hat, bits);
        decoder (y None): z_hat of `shape` decoded."""
        tables, medians = self.density_tables["z"]
        if y is not None:
            if z is None:
                z = np.asarray(self.functions["hyper_analysis"](self.params, y[None]))[0]
            z = np.asarray(z, np.float32)
            shape = z.shape
        offset = np.broadcast_to(medians, shape)
        z_hat = code_step(ChannelTables(tables), coder, {}, offset, np.arange(shape[-1]), z)
        if y is None:
            return z_hat, 0.0
        z_likelihood = self.functions["z_density_likelihood"](self.params, z_hat[None])
        return z_hat, float(-np.sum(np.log2(np.asarray(z_likelihood, np.float64))))

    def hyper(self, z_hat: np.ndarray) -> np.ndarray:
        return np.asarray(self.functions["hyper_synthesis"](self.params, z_hat[None]))

    # --- y --------------------------------------------------------------------------------------
    def group_features(self, group: int, hyper, decoded: np.ndarray) -> GroupFeatures:
        return _to_host(self.functions["group_features"](self.params, group, hyper, decoded))

    def code_step(self, coder, record: dict | None, step, inputs, values):
        """Code one step's symbols (encoder: `values` (n, C) given) -> dequantized (n, C)."""
        dist, offset = self.functions["step"](
            self.params, step.group, step.kind, self.constants, *inputs
        )
        n = step.count
        dist = {name: np.asarray(value)[:n] for name, value in dist.items()}
        start, stop = self.codec.composition.groups[step.group]
        coded = code_step(
            self.y_family, coder, dist, np.asarray(offset)[:n], np.arange(start, stop), values
        )
        if record is not None:  # the encoder's rate needs the maps of every parameter
            rows, cols = step.rows[:n], step.cols[:n]
            for name, value in dist.items():
                if name not in record["dist"]:
                    shape = (*record["shape"][:2], *value.shape[1:-1], record["shape"][2])
                    record["dist"][name] = np.zeros(shape, np.float32)
                record["dist"][name][rows, cols, ..., start:stop] = value
            record["coded"][rows, cols, start:stop] = coded
        return coded

    def context_values(self, values: np.ndarray) -> np.ndarray:
        """What later steps read of decoded values: the values themselves."""
        return values

    def finalize(self, group: int, features: GroupFeatures, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.functions["finalize"](self.params, group, features, values))

    def y_result(self, record: dict, y_hat: np.ndarray):
        """(y_hat float32, the distribution maps, bits_y) at the end of encoding."""
        dist = record["dist"]
        y_likelihood = self.functions["y_likelihood"](
            self.params, record["coded"][None], {k: v[None] for k, v in dist.items()}
        )
        bits = float(-np.sum(np.log2(np.asarray(y_likelihood, np.float64))))
        return y_hat, dist, bits


def _density_quantiles(model: CompressionModel) -> dict:
    densities = model.latent_codec.factorized_densities()
    return {name: density.quantiles for name, density in densities.items()}


class IntegerBackend:
    """The prior path in exact integer arithmetic (`jahp_jax.coding.integer.IntegerPrior`: one
    64-bit XLA program per computation, or numpy's int64 loops); the encoder's h_a stays
    float."""

    dtype = np.int64

    def __init__(self, model: CompressionModel, params: dict, matmul: str = "float64"):
        float_params, arrays = split_params(params)
        if arrays is None:
            raise IntegerPriorError(
                "this integer-prior model has no integer arrays (params['integer_prior']); "
                "make one with `jahp-convert --to=integer FLOAT_MODEL DST`"
            )
        self.model = model
        self.params = float_params
        self.codec = model.make_latent_codec()
        self.prior = IntegerPrior(self.codec, arrays, matmul)
        self.table_checksum = self.prior.table_checksum()

    # --- z --------------------------------------------------------------------------------------
    def code_z(self, coder, shape: tuple[int, ...], y: np.ndarray | None, z=None):
        prior = self.prior
        if y is None:
            index = np.broadcast_to(np.arange(shape[-1]), shape)
            symbols = decode_symbols(coder, index, prior.z_tables)
            return symbols.reshape(shape) + prior.z_medians, 0.0
        if z is None:
            hyper_analysis = compiled_functions(self.model)["hyper_analysis"]
            z = np.asarray(hyper_analysis(self.params, y[None]))[0]
        z = np.asarray(z, np.float64)
        symbols = np.rint(z - prior.z_medians).astype(np.int64)
        index = np.broadcast_to(np.arange(z.shape[-1]), z.shape)
        encode_symbols(coder, symbols, index, prior.z_tables)
        return symbols + prior.z_medians, information_bits(symbols, index, prior.z_tables)

    def hyper(self, z_hat: np.ndarray) -> np.ndarray:
        return self.prior.hyper(z_hat)

    # --- y --------------------------------------------------------------------------------------
    def group_features(self, group: int, hyper, decoded: np.ndarray) -> GroupFeatures:
        return self.prior.group_features(group, hyper, decoded)

    def code_step(self, coder, record: dict | None, step, inputs, values):
        n = step.count
        index, means = self.prior.step(step.group, step.kind, inputs, n)
        index, means = index[:n], means[:n]
        tables = self.prior.gaussian_tables
        if values is not None:
            offset = means.astype(np.float64) / ONE
            symbols = np.rint(values.astype(np.float64) - offset).astype(np.int64)
            encode_symbols(coder, symbols, index, tables)
        else:
            symbols = decode_symbols(coder, index, tables).reshape(means.shape)
        if record is not None:
            rows, cols = step.rows[:n], step.cols[:n]
            start, stop = self.codec.composition.groups[step.group]
            record["bits"] += information_bits(symbols, index, tables)
            record["index"][rows, cols, start:stop] = index
            record["means"][rows, cols, start:stop] = means
        return symbols * ONE + means

    def context_values(self, values: np.ndarray) -> np.ndarray:
        """What later steps read: the fixed-point values clipped to the activation range."""
        return np.clip(values, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)

    def finalize(self, group: int, features: GroupFeatures, values: np.ndarray) -> np.ndarray:
        return self.prior.finalize(group, features, values)

    def y_result(self, record: dict, y_hat: np.ndarray):
        index = record["index"]
        dist = {
            "scales": scale_levels()[index].astype(np.float32),
            "means": (record["means"] / ONE).astype(np.float32),
            "table_index": index,
        }
        return y_hat, dist, record["bits"]


class LatentCoder:
    """Codes y (and z) of one model with fixed parameters. All arrays are single images (no batch).

    `encode(y)` -> CodedLatents; `decode(z_stream, y_stream, (h, w))` -> y_hat (h, w, M). The
    arithmetic of the prior path is the model's (`ModelConfig.integer_prior`) unless given:
    'float' or 'integer' (whose `matmul` is 'float64' (exact float64 products in XLA) or 'int64'
    (numpy's loops, the tests' reference)). `rules`: the float path's `CodingRules`, today's
    unless decoding a file of an earlier format version (`jahp_jax.coding.versions`).
    """

    def __init__(
        self,
        model: CompressionModel,
        params: dict,
        arithmetic: str | None = None,
        matmul: str = "float64",
        rules: CodingRules = CURRENT_RULES,
    ):
        self.model = model
        self.codec = model.make_latent_codec()
        self.rules = rules
        arithmetic = arithmetic or ("integer" if model.config.integer_prior else "float")
        if arithmetic == "integer":
            self.backend = IntegerBackend(model, params, matmul)
        else:
            self.backend = FloatBackend(model, params, rules)
        self.table_checksum = self.backend.table_checksum
        self.num_latents = self.codec.num_latents

    def _z_shape(self, height: int, width: int) -> tuple[int, int, int]:
        d = HYPER_DOWNSAMPLING
        return -(-height // d), -(-width // d), self.codec.z_channels

    def _code_y(self, coder, hyper, shape, y: np.ndarray | None):
        """Code y (h, w, M) (encoder: y given; decoder: None) -> (y_hat in the backend's
        arithmetic, the encoder's record or None)."""
        backend, codec = self.backend, self.codec
        groups = codec.composition.groups
        height, width, m = shape
        top, bottom, left, right = codec.coding_padding
        y_pad = np.zeros((height + top + bottom, width + left + right, m), backend.dtype)
        decoded = y_pad[top : top + height, left : left + width]  # a view: what steps read
        y_hat = np.zeros(shape, backend.dtype)
        record = None
        if y is not None:
            record = {"shape": shape, "dist": {}, "coded": np.zeros(shape, np.float32),
                      "bits": 0.0, "index": np.zeros(shape, np.int64),
                      "means": np.zeros(shape, np.int64)}  # fmt: skip
        steps = codec.schedule(height, width)
        features, group = None, None
        for index, step in enumerate(steps):
            if step.group != group:
                group = step.group
                features = backend.group_features(group, hyper, decoded[None])
            start, stop = groups[step.group]
            if step.count:
                n = step.count
                rows, cols = step.rows[:n], step.cols[:n]
                inputs = codec.step_inputs(step, y_pad, features)
                values = None if y is None else y[rows, cols, start:stop]
                coded = backend.code_step(coder, record, step, inputs, values)
                y_hat[rows, cols, start:stop] = coded
                decoded[rows, cols, start:stop] = backend.context_values(coded)
            last = index + 1 == len(steps) or steps[index + 1].group != step.group
            if codec.finalizes and last:
                corrected = backend.finalize(group, features, y_hat[None, ..., start:stop])[0]
                y_hat[..., start:stop] = corrected
                decoded[..., start:stop] = backend.context_values(corrected)
        return y_hat, record

    def _as_float(self, y_hat: np.ndarray) -> np.ndarray:
        if self.backend.dtype == np.int64:  # fixed point
            return (y_hat.astype(np.float64) / ONE).astype(np.float32)
        return y_hat

    # --- public -------------------------------------------------------------------------------
    def encode(self, y: np.ndarray, z: np.ndarray | None = None) -> CodedLatents:
        """y (h, w, M) float32 (the analysis transform's output) -> CodedLatents; `z` (h/4, w/4,
        Z), if given, is coded instead of h_a(y) (e.g. to re-encode decoded latents)."""
        y = np.asarray(y, np.float32)
        z_stream, z_hat, hyper, bits_z = b"", None, None, 0.0
        if self.codec.hyperprior:
            encoder = new_encoder()
            z_hat, bits_z = self.backend.code_z(encoder, None, y, z)
            z_stream = stream_bytes(encoder)
            hyper = self.backend.hyper(z_hat)
        encoder = new_encoder()
        y_hat, record = self._code_y(encoder, hyper, y.shape, y)
        y_hat, dist, bits_y = self.backend.y_result(record, self._as_float(y_hat))
        z_float = None if z_hat is None else np.asarray(z_hat, np.float32)
        return CodedLatents(z_stream, stream_bytes(encoder), y_hat, z_float, dist, bits_y, bits_z)

    def decode(self, z_stream: bytes, y_stream: bytes, shape: tuple[int, int]) -> np.ndarray:
        """(z_stream, y_stream, latent (h, w)) -> y_hat (h, w, M) float32."""
        hyper = None
        if self.codec.hyperprior:
            decoder = new_decoder(z_stream)
            z_hat, _ = self.backend.code_z(decoder, self._z_shape(*shape), None)
            check_exhausted(decoder, "z")
            hyper = self.backend.hyper(z_hat)
        decoder = new_decoder(y_stream)
        y_hat, _ = self._code_y(decoder, hyper, (*shape, self.num_latents), None)
        check_exhausted(decoder, "y")
        return self._as_float(y_hat)


def make_latent_coder(model: CompressionModel, params: dict) -> LatentCoder:
    """The latent coder of a model (float or integer prior path, as its config says)."""
    return LatentCoder(model, params)
