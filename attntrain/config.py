"""Typed, validated configuration: YAML (safe loading) -> `Config`.

The sections by floor: model: in attntrain/config_model.py, data: in attntrain/config_data.py (both re-exported
here), train:, pretrain:, tune: and the loading below. Every field is typed, has a default and a comment. Unknown or misspelt keys, wrong types and
out-of-range values become one `UserError` naming the key path (and the nearest valid key).
"""

from __future__ import annotations

import copy
import types
import typing
import io
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from attntrain.config_base import Section
from attntrain.config_data import (AudioConfig, DataConfig, GraphConfig, ImageConfig, InputConfig, SourceConfig,
                                   SplitConfig, TargetConfig, TranslationConfig)
from attntrain.config_model import (AttentionConfig, DecoderConfig, EmbedConfig, EncoderConfig, HeadConfig,
                                    ModelConfig)
from attntrain.errors import UserError
from attntrain.registry import suggest

__all__ = ["AttentionConfig", "AudioConfig", "Config", "DataConfig", "DecoderConfig", "EmbedConfig", "EncoderConfig",
           "GraphConfig", "HeadConfig", "ImageConfig", "InputConfig", "ModelConfig", "PretrainConfig", "SearchRange",
           "Section", "SourceConfig", "SplitConfig", "TargetConfig", "TrainConfig", "TranslationConfig", "TuneConfig",
           "apply_overrides", "build_config", "dotted_key_exists", "load_config", "parse_value", "read_yaml",
           "save_config"]


class PretrainConfig(Section):
    """pretrain: the self-supervised objective of `attntrain pretrain` (model.head.kind pretrain), by input kind.

    text: masked-token prediction (BERT): a chosen word becomes <mask> (mask_token), a random word
    (random_token) or stays; audio: masked-frame reconstruction (L1 on the normalised log-mel frames of
    masked spans); image: masked-patch reconstruction (squared error on masked patches only, MAE-style).
    Tokens are whole words here (a word vocabulary), so masking a token is whole-word masking already.
    """

    mask_prob: Optional[float] = Field(None, gt=0.0, lt=1.0)  # positions chosen; default by input kind: text 0.15, audio 0.4, image 0.6
    mask_token: float = Field(0.8, ge=0.0, le=1.0)  # text: share of chosen words replaced by <mask>
    random_token: float = Field(0.1, ge=0.0, le=1.0)  # text: share replaced by a random word (the rest stay as they are)
    span: Optional[int] = Field(None, ge=1)  # mask runs of N neighbouring positions (words, frames); default text 1, audio 10
    output_words: Optional[int] = Field(None, ge=3)  # text: score only the N most frequent words (a rarer one is to be predicted as <unk>); null: all

    @model_validator(mode="after")
    def _shares_fit(self):
        if self.mask_token + self.random_token > 1.0:
            raise ValueError(f"mask_token + random_token must be at most 1 (got {self.mask_token} + {self.random_token})")
        return self


class TrainConfig(Section):
    device: str = "auto"  # auto (cuda if present) | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # mixed precision; auto = bf16 on CUDA, off on CPU
    optimizer: Literal["adamw", "adam"] = "adamw"  # adamw: decoupled weight decay; adam: L2 penalty in the gradient
    lr: float = Field(1e-3, gt=0.0)  # peak learning rate
    weight_decay: float = Field(0.01, ge=0.0)  # AdamW decoupled weight decay (not on norms/biases)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    warmup_steps: int = Field(200, ge=0)  # linear warm-up length in optimizer steps (ignored when warmup is set)
    warmup: Optional[float] = Field(None, ge=0.0, lt=1.0)  # warm-up as a fraction of the run (transfers across data sizes)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # decay after warm-up
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)  # final lr as a fraction of the peak
    max_epochs: int = Field(10, ge=1)  # passes over the training data
    max_steps: Optional[int] = Field(None, ge=1)  # optimizer steps; overrides max_epochs (and min_steps) when set
    min_steps: Optional[int] = Field(None, ge=1)  # at least this many optimizer steps (more epochs on a small set); max_steps still caps
    grad_clip: Optional[float] = Field(1.0, gt=0.0)  # clip the global gradient norm; null disables
    accumulate: int = Field(1, ge=1)  # batches per optimizer step
    max_nonfinite: int = Field(10, ge=1)  # a step with a NaN/inf loss or gradient norm is skipped; stop (exit 3) after N in a row
    ema: Optional[float] = Field(None, gt=0.0, lt=1.0)  # evaluate/keep an exponential moving average of the weights (decay per step, e.g. 0.999)
    # the same average, its span as a fraction of the run (decay 1 - 1/(horizon x steps)); the span grows as ~1/9 of
    # the steps so far (a ramp), so ~0.11 is the longest a run reaches: a larger value warns at start and acts as that
    ema_horizon: Optional[float] = Field(None, gt=0.0, le=1.0)
    eval_every: float = Field(500, gt=0)  # evaluate on dev every N optimizer steps; < 1: a fraction of the run (and at the end)
    log_every: int = Field(50, ge=1)  # write a train record to metrics.jsonl every N steps
    metric: str = "accuracy"  # dev metric that picks the best checkpoint
    metric_mode: Literal["max", "min"] = "max"  # whether a larger metric is better
    patience: Optional[int] = Field(None, ge=1)  # stop after N evaluations without improvement
    eval_splits: list[str] = ["dev", "test"]  # splits evaluated with the best checkpoint at the end
    threads: Optional[int] = Field(None, ge=1)  # torch CPU threads; default leaves torch's choice
    save_every: Optional[int] = Field(None, ge=1)  # checkpoint every N steps; default: at every evaluation
    seeds: int = Field(1, ge=1)  # repeat training with seeds seed, seed+1, ... and report mean and std
    progress: bool = True  # show tqdm progress bars
    tensorboard: bool = False  # also write scalars to runs/<name>/tensorboard/ (needs the tensorboard extra)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # several processes (torchrun): auto = nccl on CUDA, gloo on CPU
    compile: bool = False  # torch.compile the training forward (for GPUs; on CPU it rarely pays)
    freeze: list[str] = []  # parameters not trained, by name prefix: embed, encoder, encoder.0 (first block), ...
    layer_decay: Optional[float] = Field(None, gt=0.0, le=1.0)  # lr x decay ** depth from the top: head 1, last block decay, ..., embed decay ** (layers + 1)


class SearchRange(Section):
    """tune.space.<dotted key>: a range (low, high; log scale) or a list of choices for one config key."""

    low: Optional[float] = None  # smallest value of a range
    high: Optional[float] = None  # largest value of a range
    log: bool = False  # sample the range on a log scale (learning rates, weight decay)
    step: Optional[float] = None  # range: only multiples of step above low (int ranges: default 1)
    type: Literal["auto", "float", "int"] = "auto"  # range values: auto = int when low and high are whole numbers
    choices: Optional[list[Any]] = None  # a list of values to choose from (instead of a range)

    @model_validator(mode="after")
    def _range_or_choices(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices (a non-empty list) or low and high, not both")
            return self
        if self.low is None or self.high is None or self.low > self.high:
            raise ValueError("a range needs low <= high (or give choices: [...])")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        return self

    def is_int(self) -> bool:
        whole = self.low == int(self.low) and self.high == int(self.high)
        return self.type == "int" or (self.type == "auto" and whole and (self.step is None or self.step == int(self.step)))


class TuneConfig(Section):
    """tune: the search of `attntrain tune` (Optuna): the space per dotted key, the sampler and the pruner."""

    space: dict[str, SearchRange] = {}  # dotted config key -> range or choices, e.g. train.lr: {low: 1e-4, high: 3e-3, log: true}
    sampler: Literal["tpe", "random"] = "tpe"  # tpe: Optuna's Tree-structured Parzen Estimator (seeded)
    pruner: Literal["median", "halving", "none"] = "median"  # stop a trial whose dev metric lags: median of earlier trials at the same evaluation, or successive halving
    seed: int = 0  # seed of the sampler
    startup_trials: int = Field(5, ge=0)  # trials sampled at random (and never pruned against) before TPE and the pruner act
    warmup_evals: int = Field(3, ge=0)  # dev evaluations of a trial before it may be pruned
    first_trial: Literal["config", "sampled"] = "config"  # config: a new study's trial 0 is the config as written (its values of the space's keys, where they lie in it), so the best dev is never below it; sampled: drawn like the rest

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space):
        for key in space:
            if key.split(".")[0] in ("tune", "name", "runs_dir") or not dotted_key_exists(key):
                raise ValueError(f"'{key}' is not a config key that a trial can change (e.g. train.lr)")
        return space


def dotted_key_exists(dotted: str) -> bool:
    """Whether `a.b.c` names a field of Config (a leaf or a section)."""
    cls: Optional[type[BaseModel]] = Config
    for key in dotted.split("."):
        if cls is None or key not in cls.model_fields:
            return False
        cls = _section_class(cls, key)
    return True


class Config(Section):
    name: Optional[str] = None  # run name: runs/<name>; defaults to the config file's stem
    seed: int = 1  # seeds data order, initialisation and dropout
    runs_dir: str = "runs"  # parent folder of run directories
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()  # `attntrain tune`: the search space and how trials are chosen and pruned
    pretrain: PretrainConfig = PretrainConfig()  # `attntrain pretrain`: the self-supervised objective

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / str(self.name)


# ---------------------------------------------------------------------------------------------
# Loading


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section_class(cls: type[BaseModel], key: str) -> Optional[type[BaseModel]]:
    """The section class of a field holding a section, or null (data.source)."""
    ann = cls.model_fields[key].annotation
    arms = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else ()
    return next((arm for arm in (ann, *arms) if _is_section(arm)), None)


def _listed_section(cls: type[BaseModel], key: str) -> Optional[type[BaseModel]]:
    """The section class of a field holding a list of sections, or null (data.source.add_train)."""
    ann = cls.model_fields[key].annotation
    for arm in typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else ():
        if typing.get_origin(arm) is list and _is_section(typing.get_args(arm)[0]):
            return typing.get_args(arm)[0]
    return None


def _check_keys(raw: Any, cls: type[BaseModel], path: str, source: str) -> None:
    """Reject unknown keys before pydantic does, so the message can suggest the nearest valid one."""
    if not isinstance(raw, dict):
        where = path or "top level"
        raise UserError(f"{source}: '{where}' must be a mapping of keys, got {type(raw).__name__}")
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in cls.model_fields:
            raise UserError(
                f"{source}: unknown key '{full}'{suggest(str(key), cls.model_fields)}; "
                f"valid keys here: {', '.join(cls.model_fields)}"
            )
        sub = _section_class(cls, key)
        if sub is not None and value is not None:
            _check_keys(value, sub, full, source)
        listed = _listed_section(cls, key)
        if listed is not None and isinstance(value, (dict, list)):
            for index, item in enumerate(value if isinstance(value, list) else [value]):
                _check_keys(item, listed, f"{full}[{index}]", source)


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".") or "config"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{source}: {path}: {msg}{shown}")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """Parse an override value as YAML, so `2`, `1e-3`, `true`, `null` and `[a, b]` get their types."""
    try:
        return yaml.safe_load(io.StringIO(text))
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides to a raw config dict; every key must exist in the schema."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. model.encoder.num_layers=2")
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        cls: type[BaseModel] = Config
        node = raw
        for i, key in enumerate(keys):
            path = ".".join(keys[: i + 1])
            if cls is None or key not in cls.model_fields:
                names = cls.model_fields if cls is not None else []
                raise UserError(f"--set {dotted}: unknown key '{path}'{suggest(key, names)}")
            if i == len(keys) - 1:
                node[key] = parse_value(text)
            else:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise UserError(f"--set {dotted}: '{path}' is not a section")
                cls = _section_class(cls, key)
    return raw


def read_yaml(path: Path) -> dict:
    from attntrain.io import read_text

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise UserError(f"{where}: invalid YAML: {problem}") from None
    if raw is None or raw == {}:  # every key has a default: an empty file would silently train UD EWT tagging
        raise UserError(f"{path}: empty config (no keys); start from one of the files in configs/")
    return raw


def build_config(raw: dict, source: str, overrides: list[str] = (), default_name: str | None = None) -> Config:
    raw = apply_overrides(raw, list(overrides))
    _check_keys(raw, Config, "", source)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(_format_validation(e, source)) from None
    if cfg.name is None:
        cfg.name = default_name or "run"
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read, override and validate a YAML config. Every problem is a `UserError`."""
    path = Path(path)
    return build_config(read_yaml(path), str(path), overrides, default_name=path.stem)


def save_config(cfg: Config, path: Path) -> None:
    from attntrain.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
