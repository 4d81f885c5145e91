"""attntrain: train and evaluate self-attention models from YAML configs."""

__version__ = "0.1.0"
