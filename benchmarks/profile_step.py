"""Where the time of one train step (or of g_s decoding) goes, per XLA op, with FLOPs and GFLOP/s.

    .venv/bin/python -m benchmarks.profile_step [--what=train|synthesis] [--size=192] [--batch=8]
        [--patch=128] [--steps=3] [--top=25] [--model=tcm] [--latents=80]

The compiled program runs `--steps` times under `jax.profiler`; on XLA:CPU every op (a thunk: a
fused conv or dot handed to YNNPACK, a loop fusion, a copy) is one trace event on the thread that
ran it, from its start to its end. Per op this prints those milliseconds per call, what it is
(conv forward, weight gradient, dot, copy, elementwise), the model layer it belongs to (from the
HLO metadata), its FLOPs (counted from the HLO shapes: 2 x output elements x contracted
elements) and GFLOP/s while it ran, against the dense-matmul rate measured in the same run (the
limit); then the totals per kind and how busy the threads were. An op may run alone on both
cores (a large YNNPACK conv) or beside another op, so the per-op times add up to more than the
wall time, and the wall time exceeds the busiest thread's by its idle gaps.

`--what=train` profiles the train step of joint at N = M = --size, or with `--model` that preset's
(its transform, prior and options) at N = --size, M = --latents.
`--what=synthesis` profiles g_s of a mean-scale model at N = M = --size on a 768x512 image's latent
(what decode spends most of its time in), or with `--model` g_s of that `--model` preset at its
published widths (cheng2020-anchor, elic2022-official, tcm, ...). Writes
benchmarks/results/profile_<what>.json (its "model" says which preset, if any).
"""

from __future__ import annotations

import collections
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from benchmarks.machine import cpu_model, load_average, matmul_gflops, write_result
from benchmarks.programs import compiled_synthesis, train_step_setup
from jahp_jax.cli.command import Command

RESULTS = Path(__file__).resolve().parent / "results"
# Thread-pool bookkeeping events, not ops.
_NOT_OPS = ("ThreadpoolListener", "ThunkExecutor", "end: ", "SlinkyThreadPool")
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%?(?P<name>[\w.\-]+) = (?P<shape>[\w\[\],{}: ]+?) "
    r"(?P<opcode>[\w\-]+)\((?P<operands>[^)]*)\)(?P<attributes>.*)$"
)
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?(?P<name>[\w.\-]+) .*\{$")


def _dims(shape: str) -> list[int]:
    """[8, 64, 64, 192] from 'f32[8,64,64,192]{3,2,1,0}' (the first array of a tuple)."""
    match = re.search(r"\[([\d,]*)\]", shape)
    return [int(d) for d in match.group(1).split(",") if d] if match else []


class HloOps:
    """The instructions of a compiled HLO module, by computation, with their FLOPs and kinds."""

    def __init__(self, text: str):
        self.computations: dict[str, dict[str, dict]] = {}
        self.calls: dict[str, str] = {}  # fusion instruction -> fused computation
        current: dict[str, dict] | None = None
        for line in text.splitlines():
            header = _COMPUTATION.match(line)
            if header and "=" not in line.split("{")[0]:
                current = self.computations.setdefault(header.group("name"), {})
                continue
            instruction = _INSTRUCTION.match(line)
            if instruction is None or current is None:
                continue
            fields = instruction.groupdict()
            fields["operands"] = re.findall(r"%?([\w.\-]+)", fields["operands"])
            current[fields["name"]] = fields
            called = re.search(r"calls=%?([\w.\-]+)", fields["attributes"])
            if called:
                self.calls[fields["name"]] = called.group(1)
        self.instructions = {name: fields for body in self.computations.values()
                             for name, fields in body.items()}  # fmt: skip

    def _body(self, name: str) -> dict[str, dict]:
        return self.computations.get(self.calls.get(name, ""), {})

    def _core(self, name: str) -> dict | None:
        """The conv or dot an op runs (itself, or inside its fused computation)."""
        fields = self.instructions.get(name)
        if fields and fields["opcode"] in ("convolution", "dot"):
            return fields
        body = self._body(name)
        cores = [f for f in body.values() if f["opcode"] in ("convolution", "dot")]
        return cores[0] if cores else None

    def flops(self, name: str) -> float:
        """2 x output elements x contracted elements of the op's conv or dot (0 for others)."""
        core = self._core(name)
        if core is None:
            return 0.0
        scope = {**self.instructions, **self._body(name)}
        lhs, rhs = (_dims(scope[o]["shape"]) if o in scope else [] for o in core["operands"][:2])
        out = math.prod(_dims(core["shape"]))
        if core["opcode"] == "dot":
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", core["attributes"])
            axes = [int(a) for a in contracting.group(1).split(",") if a] if contracting else []
            return 2.0 * out * math.prod(lhs[a] for a in axes)
        labels = re.search(r"dim_labels=\w+_(\w+)->", core["attributes"])
        groups = re.search(r"feature_group_count=(\d+)", core["attributes"])
        if not labels or not rhs:
            return 0.0
        out_features = rhs[labels.group(1).index("o")]
        return 2.0 * out * math.prod(rhs) / out_features / (int(groups.group(1)) if groups else 1)

    def kind(self, name: str) -> str:
        core = self._core(name)
        if core is not None and core["opcode"] == "dot":
            return "dot"
        if core is not None:
            window = re.search(r"window=\{([^}]*)\}", core["attributes"])
            window = window.group(1) if window else ""
            if "rhs_dilate" in window or "convolution-window-dilated" in core["name"]:
                return "conv dW"
            if "lhs_dilate" in window:
                return "conv lhs-dilated"
            return "conv" + (" (strided)" if "stride=" in window else "")
        fields = self.instructions.get(name, {})
        text = name + " " + fields.get("opcode", "")
        if "copy" in text or "transpose" in text:
            return "copy/transpose"
        if "reduce" in text or any(f["opcode"] == "reduce" for f in self._body(name).values()):
            return "reduce"
        return "elementwise"

    def layer(self, name: str) -> str:
        """The model path in the op's metadata (e.g. 'analysis/g_a/layers_2'), or ''."""
        core = self._core(name) or self.instructions.get(name)
        candidates = [core] if core else []
        candidates += list(self._body(name).values())
        for fields in candidates:
            op_name = re.search(r'op_name="([^"]*)"', fields["attributes"])
            if op_name:
                path = op_name.group(1)
                backward = "transpose(" in path
                path = re.sub(r"^.*?CompressionModel\)*/", "", path)
                path = "/".join(p for p in path.split("/") if not p.startswith(("jit(", "jvp(")))
                parts = [p.split(".")[-1] for p in path.split("/")]
                return ("bwd " if backward else "") + "/".join(parts[:3])
        return ""


def _events(trace_dir: Path) -> tuple[dict[str, float], dict[str, float], float]:
    """Per op: total thread-ns; per XLA thread: ns in ops; the wall ns from first to last op."""
    (xspace,) = trace_dir.rglob("*.xplane.pb")
    profile = jax.profiler.ProfileData.from_file(str(xspace))
    per_op: dict[str, float] = collections.Counter()
    busy: dict[str, float] = {}
    first, last = math.inf, 0.0
    for plane in profile.planes:
        for line in plane.lines:
            if "XLA" not in line.name:  # XLA's worker threads and the ones that start a call
                continue
            ops = [e for e in line.events if not e.name.startswith(_NOT_OPS)]
            if not ops:
                continue
            for event in ops:
                per_op[event.name] += event.duration_ns
                first = min(first, event.start_ns)
                last = max(last, event.start_ns + event.duration_ns)
            busy[line.name] = sum(e.duration_ns for e in ops)
    return per_op, busy, last - first


def _program(what: str, size: int, latents: int, batch: int, patch: int, preset: str | None):
    """(compiled function, a call running it once) for the train step (of joint, or of the
    --model `preset`, at N = size, M = latents) or g_s (of mean_scale at N = M = size, or of the
    --model `preset` at its published widths)."""
    if what == "train":
        from jahp_jax.training import train

        config, model, mesh, hparams, x = train_step_setup(
            "joint", size, latents, batch, patch, preset
        )
        state = train.create_train_state(config, model, mesh)
        compiled = train.jit_train_step(config, model, mesh).lower(state, x, hparams).compile()
        holder = {"state": state}

        def run() -> None:
            holder["state"], stats = compiled(holder["state"], x, hparams)
            jax.block_until_ready(stats)

        return compiled, run
    from jahp_jax.models.compression_model import CompressionModel, create_model, init_params
    from jahp_jax.models.config import ModelConfig
    from jahp_jax.models.presets import MODELS

    if preset:
        model = CompressionModel(ModelConfig(**MODELS[preset].fields()))
    else:
        model = create_model("mean_scale", size, size)
    params = init_params(model, jax.random.key(0))
    y_hat = np.zeros((1, 512 // 16, 768 // 16, model.config.num_latents), np.float32)
    compiled = compiled_synthesis(model, params, y_hat)
    return compiled, lambda: jax.block_until_ready(compiled(params, y_hat))


COMMAND = Command("python -m benchmarks.profile_step", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_enum("what", "train", ["train", "synthesis"], "The program to profile.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("size", 192, "N (and M unless --latents).", flag_values=FLAGS)
flags.DEFINE_integer("latents", None, "M of the train step (default --size).", flag_values=FLAGS)
flags.DEFINE_integer("batch", 8, "Batch size (train only).", flag_values=FLAGS)
flags.DEFINE_integer("patch", 128, "Crop side (train only).", flag_values=FLAGS)
flags.DEFINE_integer("steps", 3, "Profiled calls.", flag_values=FLAGS)
flags.DEFINE_integer("top", 25, "Ops listed one by one.", flag_values=FLAGS)
flags.DEFINE_string("model", None, "The --model preset to profile: its train step at N=--size, "
                    "M=--latents, or its g_s at its published widths (--size then unused).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output", None, "Where the JSON goes (default: "
                    "results/profile_<what>.json).", flag_values=FLAGS)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_profile_step, argv)


def _profile_step(_: list[str]) -> None:
    args = FLAGS
    if min(args.steps, args.size, args.batch) < 1 or args.patch < 16 or args.patch % 16:
        sys.exit("error: need --steps, --size and --batch >= 1 and --patch a multiple of 16; got "
                 f"{args.steps}, {args.size}, {args.batch}, {args.patch}")  # fmt: skip
    from jahp_jax.models.presets import MODELS

    if args.model is not None and args.model not in MODELS:
        sys.exit(f"error: --model={args.model} is not a preset; use one of {sorted(MODELS)}")
    latents = args.size if args.latents is None else args.latents
    if latents < 1:
        sys.exit(f"error: need --latents >= 1; got {latents}")
    load_before = load_average()
    limit = matmul_gflops()
    compiled, run = _program(args.what, args.size, latents, args.batch, args.patch, args.model)
    run()  # warm-up
    untraced = []
    for _ in range(args.steps):
        start = time.perf_counter()
        run()
        untraced.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                run()
        per_op, busy, wall_ns = _events(Path(trace_dir))
    hlo = HloOps(compiled.as_text())
    cores = os.cpu_count() or 1
    rows = []
    for name, thread_ns in sorted(per_op.items(), key=lambda item: -item[1]):
        ms = thread_ns / args.steps / 1e6
        gflop = hlo.flops(name) / 1e9
        rows.append({"op": name, "kind": hlo.kind(name), "layer": hlo.layer(name),
                     "thread_ms": ms, "gflop": gflop,
                     "gflops": gflop / ms * 1e3 if gflop else None})  # fmt: skip
    kinds: dict[str, dict[str, float]] = {}
    for row in rows:
        total = kinds.setdefault(row["kind"], {"thread_ms": 0.0, "gflop": 0.0, "ops": 0})
        total["thread_ms"] += row["thread_ms"]
        total["gflop"] += row["gflop"]
        total["ops"] += 1
    step_s = statistics.median(untraced)
    thread_ms = sum(row["thread_ms"] for row in rows)
    gflop = sum(row["gflop"] for row in rows)
    busy_fraction = sum(busy.values()) / (cores * wall_ns) if wall_ns else 0.0

    print(f"CPU {cpu_model()}, {cores} cores, load {load_before:.2f}; dense matmul 2048^3 (the "
          f"limit): {limit:.1f} GFLOP/s; jax {jax.__version__}")  # fmt: skip
    shape = (f", batch {args.batch}, {args.patch}x{args.patch}" if args.what == "train"
             else ", 768x512 image")  # fmt: skip
    if args.what == "train":
        widths = f"N={args.size} M={latents}"
    else:
        widths = "published widths" if args.model else f"N=M={args.size}"
    name = f"{args.model} " if args.model else ""
    print(f"{args.what}: {name}{widths}{shape}"  # fmt: skip
          f"; {step_s:.3f} s per call untraced, {wall_ns / args.steps / 1e9:.3f} s traced; "
          f"{gflop:.1f} GFLOP in convs and dots ({gflop / step_s:.1f} GFLOP/s, "
          f"{gflop / step_s / limit:.0%} of the limit)")  # fmt: skip
    print(f"ops ran {thread_ms:.0f} thread-ms per call on {len(busy)} XLA threads: "
          f"{busy_fraction:.0%} of {cores} cores x the traced wall time")  # fmt: skip
    print()
    print("| kind | ops | ms per call | share | GFLOP | GFLOP/s while running | of the limit |")
    print("|---|---|---|---|---|---|---|")
    for kind, total in sorted(kinds.items(), key=lambda item: -item[1]["thread_ms"]):
        rate = total["gflop"] / total["thread_ms"] * 1e3 if total["gflop"] else None
        print(f"| {kind} | {total['ops']} | {total['thread_ms']:.1f} | "
              f"{total['thread_ms'] / thread_ms:.0%} | {total['gflop']:.2f} | "
              + (f"{rate:.1f} | {rate / limit:.0%} |" if rate else "- | - |"))  # fmt: skip
    print()
    print(f"The {args.top} ops that take longest:")
    print()
    print("| op | kind | layer | ms per call | GFLOP | GFLOP/s while running | of the limit |")
    print("|---|---|---|---|---|---|---|")
    for row in rows[: args.top]:
        rate = row["gflops"]
        print(f"| {row['op']} | {row['kind']} | {row['layer']} | {row['thread_ms']:.1f} | "
              f"{row['gflop']:.2f} | "
              + (f"{rate:.1f} | {rate / limit:.0%} |" if rate else "- | - |"))  # fmt: skip
    result = {
        "what": args.what, "model": args.model, "size": args.size, "latents": latents,
        "batch": args.batch, "patch": args.patch,
        "steps": args.steps, "matmul_gflops": limit, "load_before": load_before,
        "load_after": load_average(), "s_per_call": step_s, "untraced_s": untraced,
        "traced_s_per_call": wall_ns / args.steps / 1e9, "thread_ms_per_call": thread_ms,
        "busy_fraction": busy_fraction, "gflop": gflop, "kinds": kinds, "ops": rows,
    }  # fmt: skip
    write_result(args.output or RESULTS / f"profile_{args.what}.json", result)


if __name__ == "__main__":
    sys.exit(main())
