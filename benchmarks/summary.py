"""One table of every benchmark's figures, generated from benchmarks/results/*.json.

    python -m benchmarks.summary           # rewrite the table in docs/performance.md
    python -m benchmarks.summary --check   # exit 1 when the committed table differs

Each result JSON gives one row: the benchmark, what it measures, its figures, the CPU, and the
commit and command line it was made with (`benchmarks.machine.provenance`; those of each run
where the file's rows come from several; "not recorded" for results written before the
benchmarks recorded them). The table goes between the markers
`<!-- summary:start -->` and `<!-- summary:end -->` of docs/performance.md. A result JSON
without an entry in `SUMMARIES` is an error: add one there. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
PAGE = BENCHMARKS.parent / "docs" / "performance.md"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
NOT_RECORDED = "not recorded"


def _limit(result: dict[str, Any]) -> str:
    return f"{result['matmul_gflops']:.0f} GFLOP/s" if "matmul_gflops" in result else "?"


def _cli(result: dict[str, Any]) -> list[str]:
    return [
        f"decompress warm {result['decompress_warm_wall_s']:.2f} s wall "
        f"({result['decompress_warm_cpu_s']:.2f} CPU-s), cold "
        f"{result['decompress_cold_wall_s']:.2f} s ({result['decompress_cold_cpu_s']:.2f} CPU-s)",
        f"first compress {result['compress_first_wall_s']:.2f} s; {result['checkpoint']}, "
        f"{result['image']}, load {result['load_average'][0]:.1f}",
    ]


def _codec(result: dict[str, Any]) -> list[str]:
    lines = []
    for row in result["rows"]:
        line = (f"{row['prior']} N={row['num_filters']} M={row['num_latents']}: encode "
                f"{row['encode_s']:.3f} s, decode {row['decode_s']:.3f} s "
                f"({row['decode_vs_mean_scale']:.2f}x mean_scale)")  # fmt: skip
        if "synthesis_s" in row:
            line += (f", g_s {row['synthesis_s']:.3f} s "
                     f"({row['synthesis_fraction_of_limit']:.0%} of {_limit(result)})")  # fmt: skip
        if "reference_decode_s" in row:
            line += f"; CompressAI decode {row['reference_decode_s']:.3f} s"
        lines.append(line)
    return lines + [f"{result['image']}, load {result['loadavg_before'][0]:.1f}"]


def _conv(result: dict[str, Any]) -> list[str]:
    totals, limit = result["totals"], result["matmul_gflops"]
    ours = totals["gflop"] / totals["ours_ms"] * 1e3
    stock = totals["gflop"] / totals["stock_ms"] * 1e3
    layers: dict[str, list[float]] = {}
    for row in result["rows"]:
        gflop_ms = layers.setdefault(row["layer"], [0.0, 0.0])
        gflop_ms[0] += row["gflop"]
        gflop_ms[1] += row["ours_ms"]
    fast = sum(gflop / ms * 1e3 >= 0.5 * limit for gflop, ms in layers.values())
    return [
        f"all convs of a joint N=M={result['size']} step (batch {result['batch']}, "
        f"{result['patch']}x{result['patch']}): {ours:.0f} GFLOP/s ({ours / limit:.0%} of "
        f"{_limit(result)}); XLA's stock convs {stock:.0f} GFLOP/s ({stock / limit:.0%})",
        f"{fast} of {len(layers)} layers at >= 50% of the limit; load "
        f"{result['loadavg_before'][0]:.1f}",
    ]


def _pointwise(result: dict[str, Any]) -> list[str]:
    def speedups(kind: str, large: bool) -> str:
        values = sorted(row[f"{kind}_onednn_speedup"] for row in result["rows"]
                        if (row["positions"] >= result["threshold_positions"]) == large)
        if not values:
            return "-"
        return f"median {values[len(values) // 2]:.2f}x ({values[0]:.2f}-{values[-1]:.2f}x)"

    return [f"oneDNN's 1x1 conv against the matmul from {result['threshold_positions']} "
            f"positions on (the switch): forward {speedups('forward', True)}, train "
            f"{speedups('train', True)}; below: forward {speedups('forward', False)}, train "
            f"{speedups('train', False)}"]  # fmt: skip


def _integer_prior(result: dict[str, Any]) -> list[str]:
    return [f"{model['model']}, {model['images']} image(s): integer decode "
            f"{model['decode_ratio']:.2f}x the float one, bytes {model['rate_penalty']:+.3%}"
            for model in result["models"]]  # fmt: skip


def _followups(result: dict[str, Any]) -> list[str]:
    return [f"{row['model']}: encode {row['encode_s']:.2f} s, decode {row['decode_s']:.2f} s"
            + (f" (g_s {row['synthesis_s']:.2f} s" if "synthesis_s" in row else "")
            + (f": {row['synthesis_gflop']:.0f} GFLOP at {row['synthesis_gflops']:.0f} GFLOP/s"
               if "synthesis_gflop" in row else "")
            + (")" if "synthesis_s" in row else "")
            + (f" (reference {row['reference_decode_s']:.2f} s: {row['decode_speedup']:.2f}x"
               + (f"; at most {row['decode_speedup_bound']:.2f}x with g_s at the run's best "
                  f"{result['best_gflops']:.0f} GFLOP/s" if "decode_speedup_bound" in row else "")
               + ")"
               if "decode_speedup" in row else "")
            for row in result["rows"]]  # fmt: skip


def _reference_followups(result: dict[str, Any]) -> list[str]:
    return [f"{row['model']}: encode {row['encode_s']:.2f} s, decode {row['decode_s']:.2f} s, "
            f"load {row['load_before']:.1f}" for row in result["rows"]]  # fmt: skip


def _integer_followups(result: dict[str, Any]) -> list[str]:
    return [f"{case['arch']}: float {case['float_bytes']} B, integer "
            + (f"{case['integer_bytes']} B ({case['rate_cost']:+.2%}), exact decode "
               f"{'yes' if case['decodes_exactly'] else 'NO'}"
               if case["integer_form"] == "yes" else "none (refused)")
            for case in result["cases"]]  # fmt: skip


def _metrics(result: dict[str, Any]) -> list[str]:
    return [f"PSNR + MS-SSIM of one Kodak point ({result['image']}) "
            f"{result['seconds_per_point']:.2f} s; with a conv filter "
            f"{result['conv_filter_ms_ssim_seconds']:.2f} s; load "
            f"{result['loadavg_before'][0]:.1f}"]  # fmt: skip


def _train(result: dict[str, Any]) -> list[str]:
    lines = []
    for row in result["rows"]:
        line = (f"{row['setting']} ({row['prior']} N={row['N']} M={row['M']}, batch "
                f"{row['batch']}, {row['patch']}x{row['patch']}): {row['s_per_step']:.3f} s/step "
                f"({row['fraction_of_limit']:.0%} of {_limit(result)}), peak RSS "
                f"{row['peak_rss_gib']:.2f} GiB")  # fmt: skip
        if "speedup_vs_reference" in row:
            line += (f"; CompressAI {row['reference_s_per_step']:.3f} s "
                     f"({row['speedup_vs_reference']:.2f}x)")  # fmt: skip
        lines.append(line + f"; load {row['load_before'][0]:.1f}")
    return lines


def _peak(row: dict[str, Any], key: str = "peak_rss_gib") -> str:
    return f", peak {row[key]:.2f} GiB" if key in row else ""


def _transforms(result: dict[str, Any]) -> list[str]:
    return [f"{row['model']} N={row['N']} M={row['M']}, batch {row['batch']}, "
            f"{row['patch']}x{row['patch']}: {row['s_per_step']:.1f} s/step "
            f"({row['cpu_s_per_step']:.1f} CPU-s{_peak(row)}); reference "
            f"{row['reference_s_per_step']:.1f} s ({row['reference_cpu_s_per_step']:.1f} CPU-s"
            f"{_peak(row, 'reference_peak_rss_gib')}): {row['speedup_vs_reference']:.2f}x "
            f"wall, {row['cpu_speedup_vs_reference']:.2f}x CPU; load {row['load_before']:.1f}"
            for row in result["rows"]]  # fmt: skip


def _profile(result: dict[str, Any]) -> list[str]:
    shape = (f"batch {result['batch']}, {result['patch']}x{result['patch']}"
             if result["what"] == "train" else "768x512 image")  # fmt: skip
    rate = result["gflop"] / result["s_per_call"]
    model = result.get("model") or f"N=M={result['size']}"  # a --model preset, or mean_scale
    return [f"{result['what']} {model}, {shape}: {result['s_per_call']:.3f} s per "
            f"call, {result['gflop']:.1f} GFLOP ({rate:.0f} GFLOP/s, "
            f"{rate / result['matmul_gflops']:.0%} of {_limit(result)}); cores busy "
            f"{result['busy_fraction']:.0%}; load {result['load_before']:.1f}"]  # fmt: skip


def _reference_compressai(result: dict[str, Any]) -> list[str]:
    lines = [f"{row['setting']} (N={row['N']} M={row['M']}, batch {row['batch']}, "
             f"{row['patch']}x{row['patch']}): {row['s_per_step']:.3f} s/step; load "
             f"{row['load_before']:.1f}" for row in result["rows"]]  # fmt: skip
    lines += [f"{row['prior']} N={row['N']} M={row['M']}, {row['image']}: encode "
              f"{row['encode_s']:.3f} s, decode {row['decode_s']:.3f} s; load "
              f"{row['load_before']:.1f}" for row in result["codecs"]]  # fmt: skip
    return lines + [f"CompressAI {result['compressai']}, torch {result['torch']}, "
                    f"{result['threads']} threads"]


def _reference_transforms(result: dict[str, Any]) -> list[str]:
    lines = [f"{row['model']} N={row['N']} M={row['M']}, batch {row['batch']}, "
             f"{row['patch']}x{row['patch']}: {row['s_per_step']:.1f} s/step "
             f"({row['cpu_s_per_step']:.1f} CPU-s{_peak(row)}); load {row['load_before']:.1f}"
             for row in result["rows"]]  # fmt: skip
    return lines + [f"CompressAI {result['compressai']}, torch {result['torch']}, "
                    f"{result['threads']} threads"]


def _conv_chain(result: dict[str, Any]) -> list[str]:
    lines = []
    for row in result["rows"]:
        line = (f"{row['model']} ({row['framework']} {row['version']}), {row['convs']} convs, "
                f"batch {row['batch']}, {row['patch']}x{row['patch']}: "
                f"{row['s_per_step']:.2f} s/step{_peak(row)}")  # fmt: skip
        if "speedup_vs_torch" in row:
            line += f"; PyTorch / jahp_jax {row['speedup_vs_torch']:.2f}x"
        lines.append(line)
    return lines


# result file stem -> (what it measures, its figures as lines)
SUMMARIES: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "bench_cli": ("`jahp-codec decompress` as a new process, empty and warm compilation cache",
                  _cli),
    "bench_codec": ("encode and decode of one Kodak image per prior, random-init weights", _codec),
    "bench_conv": ("every conv of the joint train step alone: forward, input and weight "
                   "gradients, ours against XLA's stock convs", _conv),
    "bench_integer_prior": ("the integer prior path against the float one on Kodak: decode "
                            "time and file size", _integer_prior),
    "bench_followups": ("encode and decode of one Kodak image with the follow-up models at "
                        "their published sizes, against the references", _followups),
    "bench_integer_followups": ("the follow-up reference cases as float and integer models: "
                                "file sizes, exact integer decodes", _integer_followups),
    "bench_metrics": ("PSNR and MS-SSIM of one rate point", _metrics),
    "bench_pointwise": ("1x1 convs (channel products) as YNNPACK's matmul and as oneDNN's "
                        "conv, by positions", _pointwise),
    "bench_train": ("the jitted train step (s/step, fraction of the matmul rate), against "
                    "CompressAI measured on the same CPU", _train),
    "conv_chain": ("the convs alone of the follow-up models' g_a + g_s train step, jahp_jax "
                   "and PyTorch", _conv_chain),
    "bench_transforms": ("g_s(g_a(x)) forward + backward of the follow-up transforms, against "
                         "the references", _transforms),
    "profile_synthesis": ("g_s per XLA op (`profile_step --what=synthesis`)", _profile),
    "profile_train": ("the train step per XLA op (`profile_step --what=train`)", _profile),
    "reference_compressai": ("CompressAI's train step and codecs (PyTorch venv)",
                             _reference_compressai),
    "reference_followups": ("the follow-up references' codecs (PyTorch venv)",
                            _reference_followups),
    "reference_transforms": ("the follow-up models' reference transforms (PyTorch venv)",
                             _reference_transforms),
}


def _provenance(result: dict[str, Any], key: str) -> str:
    """The result's `key` ('commit' or 'command'): the file's own, or, where its rows were made
    by several runs (the rows carry their own), each distinct value of its rows in order."""
    rows = [row for section in ("rows", "codecs", "models")
            for row in result.get(section, []) if isinstance(row, dict)]  # fmt: skip
    if any(key in row for row in rows):
        values = [f"`{row[key]}`" if key in row else NOT_RECORDED for row in rows]
        return "<br>".join(dict.fromkeys(values))
    return f"`{result[key]}`" if key in result else NOT_RECORDED


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(results: Path = RESULTS) -> str:
    """The markdown table of every `results/*.json`, one row each, sorted by file name."""
    rows = ["| benchmark | what | figures | CPU | commit | command |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for path in sorted(results.glob("*.json")):
        if path.stem not in SUMMARIES:
            raise SystemExit(f"error: no summary for {path}; add '{path.stem}' to SUMMARIES in "
                             "benchmarks/summary.py")  # fmt: skip
        what, figures = SUMMARIES[path.stem]
        result = json.loads(path.read_text())
        cpu = f"{result.get('cpu', NOT_RECORDED)}, {result.get('cpu_count', '?')} cores"
        cells = [f"`{path.name}`", what, "<br>".join(figures(result)), cpu,
                 _provenance(result, "commit"), _provenance(result, "command")]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def section(results: Path = RESULTS) -> str:
    """What goes between the markers: a note that it is generated, then the table."""
    note = ("<!-- Generated by `python -m benchmarks.summary` from benchmarks/results/*.json; "
            "edit the JSONs or benchmarks/summary.py, not this table. -->")  # fmt: skip
    return f"{START}\n{note}\n\n{table(results)}{END}"


def committed_section(page: Path | None = None) -> tuple[str, int, int]:
    """(the page's text (default: docs/performance.md), the start and end offsets of its marked
    section, markers included)."""
    page = page or PAGE
    text = page.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"error: {page} has no '{START}' ... '{END}' markers; add them where "
                         "the table goes")  # fmt: skip
    return text, start, end + len(END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the committed table differs from the generated one")
    args = parser.parse_args(argv)
    page = PAGE
    text, start, end = committed_section(page)
    generated = section()
    if args.check:
        if text[start:end] != generated:
            print(f"error: the table in {page} differs from benchmarks/results/*.json; run "
                  "python -m benchmarks.summary", file=sys.stderr)  # fmt: skip
            return 1
        print(f"{page}: the table is up to date")
        return 0
    if text[start:end] != generated:
        tmp = page.with_suffix(".md.tmp")
        tmp.write_text(text[:start] + generated + text[end:])
        tmp.replace(page)
    print(f"wrote the table of {len(list(RESULTS.glob('*.json')))} results to {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
