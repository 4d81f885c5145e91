"""The model is Head(Encoder(Embed(batch))); `build_model` is the one place config becomes modules."""

from attntrain.model.build import Model, build_model

__all__ = ["Model", "build_model"]
