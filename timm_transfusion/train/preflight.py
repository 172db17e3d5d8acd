"""A whole grid checked before its first cell trains, so a mistake in the last cell costs seconds, not hours."""

from __future__ import annotations

from collections.abc import Sequence

from .config import TrainConfig
from .loop import check_run


def check_cells(configs: Sequence[TrainConfig]) -> None:
    """Raise the first user error any cell would meet, before any cell writes a file.

    Every cell's options and run folder are checked; per distinct (model, init, source) the data are loaded and
    the initialized model is built once, exactly as the cell will build it: so ``transfusion-k`` beyond the
    model's block groups, a missing (default) source and a source of another architecture are found here.
    Finished cells are skipped, as training them would be.
    """
    built: set[tuple[str, str, str | None, int | None]] = set()
    for config in configs:
        config.validate()
        key = (config.model, config.init, config.init_source, config.img_size)
        check_run(config, build_model=key not in built)
        built.add(key)
