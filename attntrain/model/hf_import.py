"""model.init: hf:NAME_OR_FOLDER -- a BERT, RoBERTa, DistilBERT or ELECTRA checkpoint as attntrain's own
embedding and encoder (not a wrapped model: attention maps, predict, serve, export keep working).

The checkpoint is read by the `transformers` loaders (a save_pretrained folder, or a hub name: the local hub
cache, downloaded first where there is internet). Its config sets the architecture (`architecture`: the
post-norm blocks, activation, LayerNorm epsilon, learned positions and token types of these families); its
weights are copied by name tables (`weights`). The head always starts fresh.
"""

from __future__ import annotations

from typing import Callable

from attntrain.data.inputs.pieces import checkpoint_config, checkpoint_name, from_checkpoint
from attntrain.errors import UserError

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}

# attntrain parameter (without .weight / .bias) <- checkpoint parameters; several are concatenated (rows).
BERT_EMBED = {"table": ["embeddings.word_embeddings"], "token_types": ["embeddings.token_type_embeddings"],
              "position.table": ["embeddings.position_embeddings"], "norm": ["embeddings.LayerNorm"],
              "project": ["embeddings_project"]}
BERT_LAYER = {"attention.query": ["attention.self.query"],
              "attention.key_value": ["attention.self.key", "attention.self.value"],
              "attention.out": ["attention.output.dense"], "attention_norm": ["attention.output.LayerNorm"],
              "feed_forward.net.0": ["intermediate.dense"], "feed_forward.net.2": ["output.dense"],
              "ffn_norm": ["output.LayerNorm"]}
DISTILBERT_LAYER = {"attention.query": ["attention.q_lin"],
                    "attention.key_value": ["attention.k_lin", "attention.v_lin"],
                    "attention.out": ["attention.out_lin"], "attention_norm": ["sa_layer_norm"],
                    "feed_forward.net.0": ["ffn.lin1"], "feed_forward.net.2": ["ffn.lin2"],
                    "ffn_norm": ["output_layer_norm"]}
# family -> (embedding table, layer prefix, layer table)
TABLES = {"bert": (BERT_EMBED, "encoder.layer", BERT_LAYER), "roberta": (BERT_EMBED, "encoder.layer", BERT_LAYER),
          "electra": (BERT_EMBED, "encoder.layer", BERT_LAYER),
          "distilbert": (BERT_EMBED, "transformer.layer", DISTILBERT_LAYER)}


def position_offset(config) -> int:
    """Rows of the position table before position 0: RoBERTa counts positions from padding_idx + 1."""
    return config.pad_token_id + 1 if config.model_type == "roberta" else 0


def activation(config, name: str) -> str:
    act = config.activation if config.model_type == "distilbert" else config.hidden_act
    if act not in ACTIVATIONS:
        raise UserError(f"model.init hf:{name}: feed-forward activation '{act}' is not one of "
                        f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[act]


def architecture(config, name: str) -> dict[str, dict]:
    """The checkpoint's config as attntrain settings: {"embed": {...}, "encoder": {...}}."""
    if getattr(config, "position_embedding_type", None) not in (None, "absolute"):
        raise UserError(f"model.init hf:{name}: position_embedding_type '{config.position_embedding_type}' "
                        "is not imported (absolute positions only)")
    if config.model_type == "distilbert":
        width, layers, heads, hidden, eps = config.dim, config.n_layers, config.n_heads, config.hidden_dim, 1e-12
        token_types, dim = 0, config.dim
    else:
        width, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
        hidden, eps, token_types = config.intermediate_size, config.layer_norm_eps, config.type_vocab_size
        dim = getattr(config, "embedding_size", None) or width
    # the text-embedding extras (characters, shapes, n-grams, word dropout) do not exist for pieces: off
    embed = {"word_dim": dim, "positions": config.max_position_embeddings - position_offset(config),
             "token_types": token_types, "norm": True, "norm_eps": eps, "char_dim": 0, "shape_dim": 0, "ngram": 0,
             "word_dropout": 0.0}
    encoder = {"kind": "transformer", "width": width, "num_layers": layers, "num_heads": heads, "ffn_dim": hidden,
               "norm": "post", "norm_eps": eps, "activation": activation(config, name), "position": "none",
               "residual": True}
    return {"embed": embed, "encoder": encoder}


def configure(cfg, log: Callable[[str], None] = print):
    """cfg with the architecture of its hf: checkpoint (cfg itself for any other model.init). Settings the
    config gave explicitly that disagree are reported in one line and replaced."""
    name = checkpoint_name(cfg.model.init)
    if name is None:
        return cfg
    settings = architecture(checkpoint_config(name), name)
    sections = {"embed": cfg.model.embed, "encoder": cfg.model.encoder}
    overridden = [f"model.{part}.{key}={value} (config: {getattr(sections[part], key)})"
                  for part, values in settings.items() for key, value in values.items()
                  if key in sections[part].model_fields_set and getattr(sections[part], key) != value]
    if overridden:
        log(f"model.init hf:{name}: the checkpoint sets {', '.join(overridden)}; the config's values are ignored")
    model = cfg.model.model_copy(update={part: sections[part].model_copy(update=values)
                                         for part, values in settings.items()})
    return cfg.model_copy(update={"model": model})


def checkpoint_weights(name: str) -> tuple[object, dict]:
    """(config, state dict) of the checkpoint's base model, read by transformers' AutoModel."""
    from transformers import AutoModel

    model = from_checkpoint(name, AutoModel.from_pretrained)
    return model.config, {key: value.detach() for key, value in model.state_dict().items()}


def mapped(targets: list[str], table: dict[str, list[str]], prefix: str, source: dict, offset: int = 0) -> dict:
    """Each target parameter (e.g. `norm.weight`) from the checkpoint parameters its table entry names."""
    import torch

    out = {}
    for target in targets:
        part, _, kind = target.rpartition(".")
        if part not in table:
            raise UserError(f"model.init: no checkpoint weight for '{target}'")
        names = [f"{prefix}{name}.{kind}" for name in table[part]]
        if any(key not in source for key in names):
            raise UserError(f"model.init: the checkpoint has no '{next(k for k in names if k not in source)}'")
        pieces = [source[key] for key in names]
        value = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        out[target] = value[offset:] if part == "position.table" else value
    return out


def load_checkpoint_weights(model, name: str) -> None:
    """Copy the checkpoint's embedding and encoder weights into model.embed / model.encoder (strict: every
    parameter of both is filled, and with the shape it has)."""
    from attntrain.model.pieces import PieceEmbed

    if not isinstance(model.embed, PieceEmbed):
        raise UserError(f"model.init hf:{name}: a checkpoint of text starts only runs whose input is text "
                        f"(this run embeds with {type(model.embed).__name__})")
    config, source = checkpoint_weights(name)
    embed_table, layer_prefix, layer_table = TABLES[config.model_type]
    embed = mapped(list(model.embed.state_dict()), embed_table, "", source, position_offset(config))
    encoder = {}
    for index, _ in enumerate(model.encoder.blocks):
        targets = [key.split(".", 2)[2] for key in model.encoder.state_dict() if key.startswith(f"blocks.{index}.")]
        found = mapped(targets, layer_table, f"{layer_prefix}.{index}.", source)
        encoder.update({f"blocks.{index}.{key}": value for key, value in found.items()})
    try:
        model.embed.load_state_dict(embed)
        model.encoder.load_state_dict(encoder)
    except RuntimeError as e:  # a config edited after configure(): shapes that no longer fit
        raise UserError(f"model.init hf:{name}: the weights do not fit the model ({str(e).splitlines()[-1].strip()})") \
            from None


def load_init(model, cfg) -> None:
    """model.init hf:NAME: the checkpoint's weights into the model's embedding and encoder (other values: nothing)."""
    name = checkpoint_name(cfg.model.init)
    if name is not None:
        load_checkpoint_weights(model, name)
