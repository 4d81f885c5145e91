"""The training floor: loop, trainer, checkpoints, distribution."""
