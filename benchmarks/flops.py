"""FLOPs of the joint model, counted from its layer shapes (multiply-adds x 2; elementwise ops
and the entropy models are not counted, so achieved rates are slight underestimates)."""

from __future__ import annotations

# (name, input side, k, stride, I, O): every conv of the joint model as the strided conv S that the
# layer or its transpose is (a transposed conv I -> O is S: O -> I on the larger side).
Layer = tuple[str, int, int, int, int, int]


def joint_layers(size: int, patch: int) -> list[Layer]:
    """The convs of the joint model at N = M = size on patch x patch inputs."""
    n = m = size
    y = patch // 16
    return [
        ("g_a.0 conv 5x5/2", patch, 5, 2, 3, n),
        ("g_a.2 conv 5x5/2", patch // 2, 5, 2, n, n),
        ("g_a.4 conv 5x5/2", patch // 4, 5, 2, n, n),
        ("g_a.6 conv 5x5/2", patch // 8, 5, 2, n, m),
        ("h_a.0 conv 3x3/1", y, 3, 1, m, n),
        ("h_a.2 conv 5x5/2", y, 5, 2, n, n),
        ("h_a.4 conv 5x5/2", y // 2, 5, 2, n, n),
        ("h_s.0 deconv 5x5/2", y // 2, 5, 2, m, n),
        ("h_s.2 deconv 5x5/2", y, 5, 2, m * 3 // 2, m),
        ("h_s.4 conv 3x3/1", y, 3, 1, m * 3 // 2, 2 * m),
        ("context 5x5/1", y, 5, 1, m, 2 * m),
        ("entropy.0 conv 1x1", y, 1, 1, 4 * m, m * 10 // 3),
        ("entropy.2 conv 1x1", y, 1, 1, m * 10 // 3, m * 8 // 3),
        ("entropy.4 conv 1x1", y, 1, 1, m * 8 // 3, 2 * m),
        ("g_s.0 deconv 5x5/2", patch // 8, 5, 2, n, m),
        ("g_s.2 deconv 5x5/2", patch // 4, 5, 2, n, n),
        ("g_s.4 deconv 5x5/2", patch // 2, 5, 2, n, n),
        ("g_s.6 deconv 5x5/2", patch, 5, 2, 3, n),
    ]


def conv_flops(batch: int, side: int, k: int, stride: int, c_in: int, c_out: int) -> float:
    """FLOPs of one application of S (or of S^T, or of its weight gradient)."""
    out_side = -(-side // stride)
    return 2.0 * batch * out_side**2 * k * k * c_in * c_out


def gdn_flops(batch: int, size: int, patch: int) -> float:
    """The three GDNs of g_a (as many as g_s's IGDNs): 1x1 C x C at sides patch/2 .. patch/8."""
    return sum(2.0 * batch * (patch // 2**i) ** 2 * size * size for i in (1, 2, 3))


def train_step_flops(size: int, batch: int, patch: int) -> float:
    """One training step: forward, input gradients (none for the image) and weight gradients."""
    convs = sum(3 * conv_flops(batch, *layer[1:]) for layer in joint_layers(size, patch))
    first = joint_layers(size, patch)[0]
    return convs - conv_flops(batch, *first[1:]) + 2 * 3 * gdn_flops(batch, size, patch)


def synthesis_flops(size: int, height: int, width: int) -> float:
    """g_s (four transposed convs and three IGDNs) on one height x width image (multiples of 16)."""
    n = m = size
    flops = 0.0
    for i, (c_in, c_out) in enumerate(((m, n), (n, n), (n, n), (n, 3))):
        in_pixels = (height // 2 ** (4 - i)) * (width // 2 ** (4 - i))
        flops += 2.0 * in_pixels * 25 * c_in * c_out  # S^T, as S from the 2x larger side
        if i < 3:
            flops += 2.0 * 4 * in_pixels * n * n  # the IGDN after it, on the 2x larger output
    return flops
