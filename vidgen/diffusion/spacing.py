"""Which timesteps of a discrete chain a shorter chain keeps (improved DDPM, section 4): pure index arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

_DDIM_PREFIX = "ddim"


def space_timesteps(num_timesteps: int, spacing: int | str | Sequence[int]) -> list[int]:
    """Choose which timesteps of a ``num_timesteps`` chain to keep.

    Args:
        num_timesteps: length of the chain being respaced.
        spacing: one of
            * an int ``N`` (or the string ``"N"``): ``N`` steps as evenly spaced as possible over the whole
              chain, always including the first (0) and, for ``N > 1``, the last timestep;
            * a list of ints or a comma-separated string (``"10,15,20"``): the chain is cut into that many
              equal sections (the first ``T % len`` sections one step longer) and each section is spaced
              evenly with its own count;
            * ``"ddimN"``: the fixed integer stride ``k`` with ``len(range(0, T, k)) == N``, as in DDIM
              (``"ddim50"`` of 1000 gives ``0, 20, ..., 980``).

    Returns:
        The kept timesteps, sorted ascending, without duplicates.
    """
    if isinstance(spacing, str):
        text = spacing.strip()
        if text.startswith(_DDIM_PREFIX):
            return _ddim_stride_steps(num_timesteps, int(text[len(_DDIM_PREFIX) :]))
        counts = [int(part) for part in text.split(",") if part.strip()]
    elif isinstance(spacing, int):
        counts = [spacing]
    else:
        counts = [int(c) for c in spacing]
    if not counts:
        raise ValueError(f"empty timestep spacing {spacing!r}")
    return _sectioned_steps(num_timesteps, counts)


def _ddim_stride_steps(num_timesteps: int, count: int) -> list[int]:
    """Timesteps ``range(0, T, k)`` for the smallest stride ``k`` giving exactly ``count`` of them."""
    for stride in range(1, num_timesteps + 1):
        kept = list(range(0, num_timesteps, stride))
        if len(kept) == count:
            return kept
        if len(kept) < count:
            break
    raise ValueError(f"no integer stride gives exactly {count} of {num_timesteps} timesteps")


def _sectioned_steps(num_timesteps: int, counts: list[int]) -> list[int]:
    """Split the chain into ``len(counts)`` near-equal sections and evenly pick ``counts[i]`` in section ``i``."""
    base, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for index, count in enumerate(counts):
        size = base + (1 if index < extra else 0)
        if count < 0 or count > size:
            raise ValueError(f"cannot take {count} steps from a section of {size} (chain of {num_timesteps})")
        if count == 1:
            kept.append(start)
        elif count > 1:
            # Fractional stride so the first and last step of the section are both kept. The position is
            # accumulated (not i * stride) so exact-half cases round like improved DDPM's reference.
            stride = (size - 1) / (count - 1)
            position = 0.0
            for _ in range(count):
                kept.append(start + round(position))
                position += stride
        start += size
    return sorted(set(kept))
