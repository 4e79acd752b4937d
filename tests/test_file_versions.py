"""Files of every .jahp format version ever written still decode (tests/data/files, its README).

Each committed file was written by the commit its name gives, with a shipped model, and
`expected.json` holds what that commit's own decoder made of it. The integer file must decode
bit-exactly here and anywhere. A float file's numbers depend on the float arithmetic (machine and
code); so its decode runs in a subprocess that compiles as a user's run does
(`conftest.default_codegen`), and must give the symbols the writer coded (y_hat's channel, row and
column sums to well within one symbol) with the coding era its tables name, or, on a machine whose
float arithmetic makes other tables, the one-line refusal documented in docs/file_format.md.
Run as a script (`python tests/test_file_versions.py OUT.json`) it is that subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = REPO_ROOT / "tests" / "data" / "files"
EXPECTED = json.loads((FILES / "expected.json").read_text())
FLOAT_FILES = sorted(name for name, e in EXPECTED.items() if e["arithmetic"] == "float")
REFERENCE_FLOAT_FILE = "v3_20b4da1_float_joint_n64_kodim23.jahp"  # today's coding rules
SUM_TOLERANCE = 0.25  # a wrong symbol moves a sum by >= 1; float means by < 0.01 here


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _sums(y_hat: np.ndarray) -> dict[str, list[float]]:
    y_hat = y_hat.astype(np.float64)
    return {
        "channels": y_hat.sum(axis=(0, 1)).tolist(),
        "rows": y_hat.sum(axis=(1, 2)).tolist(),
        "cols": y_hat.sum(axis=(0, 2)).tolist(),
    }


def decode_float_files() -> dict:
    """What this process's float arithmetic makes of every committed float file."""
    from jahp_jax.coding import bitstream, versions
    from jahp_jax.coding.range_coder import CodecError
    from jahp_jax.io.checkpoints import load_codec

    codec = load_codec(REPO_ROOT / "models" / "joint_n64_lmbda0.013")
    reference = bitstream.unpack((FILES / REFERENCE_FLOAT_FILE).read_bytes())[0]
    outcomes = {"same_arithmetic": codec.coder.table_checksum == reference.tables_crc}
    for name in FLOAT_FILES:
        data = (FILES / name).read_bytes()
        header = bitstream.unpack(data)[0]
        try:
            image, y_hat = codec.decompress_with_latents(data)
        except CodecError as error:
            outcomes[name] = {"refused": str(error)}
            continue
        rules = codec.coder_for(header).rules
        outcomes[name] = {
            "rules": versions.RULES[header.version].index(rules),
            "y_hat_sha256": _sha256(y_hat.astype("<f4")),
            "decoded_sha256": _sha256(image),
            "y_hat_sums": _sums(y_hat),
        }
    return outcomes


@pytest.fixture(scope="module")
def float_decodes(tmp_path_factory) -> dict:
    """`decode_float_files` in a subprocess compiled as a user's run is."""
    from conftest import default_codegen

    out = tmp_path_factory.mktemp("versions") / "outcomes.json"
    env = {**default_codegen(dict(os.environ)), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_version_ever_written_has_a_reader_a_coding_and_a_committed_file():
    from jahp_jax.coding import bitstream, versions

    assert {1, 2, 3} <= set(bitstream.READABLE_VERSIONS)  # a version is never dropped
    assert set(versions.RULES) == set(bitstream.READABLE_VERSIONS)
    assert sorted(EXPECTED) == sorted(path.name for path in FILES.glob("*.jahp"))
    committed = {bitstream.unpack((FILES / name).read_bytes())[0].version for name in EXPECTED}
    assert committed == set(bitstream.READABLE_VERSIONS)
    eras = {(e["version"], e["rules"]) for e in EXPECTED.values() if e["arithmetic"] == "float"}
    assert eras == {(v, i) for v, rules in versions.RULES.items() for i in range(len(rules))}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_header_of_any_version_names_the_model_that_wrote_it(name):
    from jahp_jax.coding import bitstream
    from jahp_jax.io.checkpoints import load_model, params_fingerprint

    expected = EXPECTED[name]
    header = bitstream.unpack((FILES / name).read_bytes())[0]
    _, params, config = load_model(REPO_ROOT / expected["model"])
    assert header.version == expected["version"] and header.arithmetic == expected["arithmetic"]
    assert header.model == config.fingerprint()
    assert header.fingerprint == params_fingerprint(params)
    if header.version < 3:  # named by prior and sizes, mapped to today's identity
        assert header.config == config


def test_the_integer_file_decodes_bit_exactly():
    """In this process, under the test suite's XLA flags: the integer path runs no XLA."""
    from jahp_jax.io.checkpoints import load_codec

    for name, expected in EXPECTED.items():
        if expected["arithmetic"] == "integer":
            codec = load_codec(REPO_ROOT / expected["model"])
            _, y_hat = codec.decompress_with_latents((FILES / name).read_bytes())
            assert _sha256(y_hat.astype("<f4")) == expected["y_hat_sha256"], name


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOAT_FILES)
def test_a_float_file_decodes_to_the_writers_symbols_where_the_arithmetic_allows(
    float_decodes, name
):
    """Where this machine's float arithmetic makes the reference file's tables (the machine that
    wrote them does), every float file decodes, with the coding era its tables name; elsewhere
    a file decodes or is refused in one line for its tables, never decoded wrong."""
    outcome, expected = float_decodes[name], EXPECTED[name]
    if "refused" in outcome:
        assert not float_decodes["same_arithmetic"], outcome["refused"]
        assert "entropy tables of this decoder differ" in outcome["refused"]
        return
    assert outcome["rules"] == expected["rules"]
    for axis, sums in expected["y_hat_sums"].items():
        difference = np.abs(np.subtract(outcome["y_hat_sums"][axis], sums)).max()
        assert difference < SUM_TOLERANCE, (axis, difference)
    exact = outcome["y_hat_sha256"] == expected["y_hat_sha256"]
    print(f"{name}: {'the writer' if exact else 'not the writer'}'s y_hat bit for bit")


if __name__ == "__main__":  # the subprocess of `float_decodes`: OUT.json
    Path(sys.argv[1]).write_text(json.dumps(decode_float_files()))
