"""How each .jahp format version coded its symbols: the rules a reader of that version needs.

The header layouts are `jahp_jax.coding.bitstream`'s; this module holds what the header does not
say. Each version maps to the `CodingRules` its files were written with, in the order a reader
tries them; where a version's coding changed while its number did not (version 1 did twice), its
files are told apart by the header's entropy-table CRC, which each set of rules reproduces (two
sets that make the same tables code the same symbols the same way). The files of tests/data/files
keep each reader tested.

Version 1, three eras (found by writing files with each commit and decoding them today):
  * 191ebc6 (2026-11-25): tables without the 2^-16 floor; factorized (z) tables from the
    likelihood evaluated op by op.
  * 49673b2 (2026-11-25, "floor every table entry at 2^-16") to aaa8565: the floor, otherwise as
    above. Every format-1 file of the shipped model before 2026-12-01 20:59 is of this era.
  * aaa8565 (2026-12-01, "Latent codecs") to 53d4d31: today's rules (jitted z tables); 53d4d31
    then named them version 2.
  Before aaa8565 a one-step prior's mixture symbols were also batched by 8 latent rows (since: by
  2^15 symbols), which sets their PMFs' widths; no rule keeps that, because no such file can be
  decoded today anyway: a mixture's per-symbol PMFs need the encoder's float numbers to the last
  bit, and the float graph of the distribution has changed since (7c7b3ef, aaa8565, a833d2e). Such
  a file is refused in one line (its decode fails, or does not end where its stream does).
Version 2 (53d4d31, 2026-12-01) and version 3 (209ec84, 2026-12-02, the header's model
fingerprint and arithmetic byte): today's rules. Version 3's integer prior path (048ffa1) reads
its tables from the model and codes as at its first commit. Version 4 (2026-12-05) is version 3
with a variable-rate model's quality code in bytes 6..7: the same rules.

What no rule restores: a float prior path's numbers. Its table choice and means come from float
arithmetic, which differs between machines (docs/portable_files.md) and between versions of this
code (e.g. a833d2e's oneDNN convolutions, 868bea5's 1x1 matmuls): a float file decodes where they
still give the same tables (means may differ in the last bits; a mixture's per-symbol PMFs do not
tolerate any difference). docs/file_format.md has what a user can rely on.
"""

from __future__ import annotations

from jahp_jax.coding.range_coder import CURRENT_RULES, PROBABILITY_FLOOR, CodingRules

# format version -> the rules its files were coded with, in the order a reader tries them
RULES: dict[int, tuple[CodingRules, ...]] = {
    1: (
        CodingRules(PROBABILITY_FLOOR, eager_density_tables=True),
        CURRENT_RULES,
        CodingRules(None, eager_density_tables=True),
    ),
    2: (CURRENT_RULES,),
    3: (CURRENT_RULES,),
    4: (CURRENT_RULES,),  # 3 plus the quality code in the header
}
