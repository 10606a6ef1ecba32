"""Load a pretrained BERT-family encoder with a classification head, seen as separable stages.

The stages (embeddings, encoder layers, pooling, classifier) let the frozen-prefix cache run the
bottom of the network once and train only the top (see ``cache.py``).

A BERT checkpoint that ``bert.py`` can run (``model.safetensors`` or ``pytorch_model.bin``, absolute
positions, a ``tokenizer.json`` or a BERT ``vocab.txt``: the packaged default and a local TinyBERT
among them) loads without importing transformers; anything else loads through transformers' Auto classes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from freezeframe import bert
from freezeframe.errors import FreezeframeError, NotAClassifier, report
from freezeframe.layouts import META_FILE
from freezeframe.source import check_model_type, dropout_settings, not_a_classifier, resolve_model
from freezeframe.tokenizer import FastTokenizer, SubwordTokenizer, check_tokenizer_files

REMOTE_CODE_FILE = "modeling_freezeframe.py"
REMOTE_MODULE = REMOTE_CODE_FILE.removesuffix(".py")
ENSEMBLE_MODEL_TYPE = "freezeframe_ensemble"
"""``config.json`` model type of an ensemble saved as one directory (see :class:`AveragedMembers`)."""
BACKEND_VARIABLE = "FREEZEFRAME_BERT"
"""Set to ``transformers`` to load every model through transformers' classes (for comparisons)."""


def _lean_bert_allowed() -> bool:
    """Whether :mod:`freezeframe.bert` may run what it can (``FREEZEFRAME_BERT=transformers`` says no)."""
    return os.environ.get(BACKEND_VARIABLE) != "transformers"


@functools.cache
def import_transformers():
    """Import transformers (5 s on 2 cores) only for models ``bert.py`` cannot run; register the mean-pooled
    and the ensemble classes."""
    import transformers
    from transformers.utils import logging as hf_logging

    from freezeframe import hf_modeling

    for config, model in [(hf_modeling.FreezeframeBertConfig, hf_modeling.FreezeframeBertForSequenceClassification),
                          (hf_modeling.FreezeframeEnsembleConfig, hf_modeling.FreezeframeEnsembleForSequenceClassification)]:
        transformers.AutoConfig.register(config.model_type, config, exist_ok=True)
        transformers.AutoModelForSequenceClassification.register(config, model, exist_ok=True)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return transformers


def runs_natively(source: str) -> bool:
    """Whether ``source`` (a resolved ``--model``) loads as :mod:`freezeframe.bert` rather than through transformers."""
    path = Path(source)
    return _lean_bert_allowed() and path.is_dir() and bert.unsupported(path) is None


def pretrained_source(name: str) -> str:
    """The directory that training from ``--model`` starts from; an ONNX export or a trained ensemble, which hold no
    single encoder's torch weights, is refused."""
    source = resolve_model(name)
    from freezeframe.predict import refuse_export_dir

    refuse_export_dir(Path(source), "train from the encoder or model directory it was exported from ({source})")
    if _is_ensemble(Path(source)):  # resolve_model checked its config.json
        raise FreezeframeError(f"{name} is an ensemble of trained classifiers; training starts from one encoder "
                               "(the default, or a model directory such as TinyBERT's)")
    model_type = bert.model_type(bert.read_json(Path(source) / "config.json"))
    if model_type not in (*bert.MODEL_TYPES, None):  # before any weights load and any plan's depth; None: the loader says
        check_model_type(model_type, name)
    return source


def encoder_depth(name: str, shared: bool = False) -> int:
    """How many encoder layers ``--model`` has as freeze plans count them, read from its configuration alone (no
    weights): DistilBERT keeps the count under ``n_layers``; ALBERT's layers share the weights of its
    ``num_hidden_groups`` groups (one by default), which are what a plan can train. With ``shared``: how many
    layers share those weights (ALBERT's ``num_hidden_layers``; 0 for a model whose layers have their own)."""
    config = bert.read_json(Path(pretrained_source(name)) / "config.json")  # resolve_model checked it
    model_type = bert.model_type(config)
    if model_type == "albert":
        return int(config.get("num_hidden_layers" if shared else "num_hidden_groups") or (12 if shared else 1))
    return 0 if shared else int(config.get("n_layers" if model_type == "distilbert" else "num_hidden_layers") or 0)


class EncoderClassifier(nn.Module):
    """A BERT-style sequence classifier split into stages: embed, encode, pool, classify.

    Args:
        hf_model: a ``BertForSequenceClassification`` (or a model with the same layout).
        pooling: ``cls`` reads the pooler over [CLS], ``mean`` the masked mean of the last layer.
    """

    kind = "transformer"

    def __init__(self, hf_model: nn.Module, pooling: str = "cls") -> None:
        super().__init__()
        self.hf = hf_model
        self.pooling = pooling
        self.new_weights: set[str] = set()
        """Parameters the pretrained checkpoint lacked (a new classifier, a masked-LM checkpoint's pooler)."""
        self.base = hf_model.base_model
        # Only BERT's own classes run stage by stage: other families with the same module names (DeBERTa's
        # embeddings, encoder.layer, classifier and dropout) have layers of another signature (relative positions,
        # tuples out) or work after the last layer (its final LayerNorm, its own pooler), so they run whole.
        self.staged = getattr(hf_model.config, "model_type", None) in bert.MODEL_TYPES
        if pooling == "mean" and not self.staged:
            # The stages (and so mean pooling, and the cache) follow BERT's modules; other families run whole,
            # through their own head, which reads the first token as --pooling cls does.
            report(f"mean pooling needs BERT's layout; {type(hf_model).__name__} classifies with its own head over "
                   "the first token (--pooling cls), and trains without the frozen-prefix cache")
            self.pooling = "cls"

    def plan_parameters(self):
        """Named parameters as freeze plans see them (the Hugging Face names, e.g. ``bert.pooler.dense.weight``)."""
        return self.hf.named_parameters()

    @property
    def label_names(self) -> list[str]:
        config = self.hf.config
        return [config.id2label[i] for i in range(config.num_labels)]

    @property
    def num_layers(self) -> int:
        if self.staged:
            return len(self.base.encoder.layer)
        from freezeframe.freeze import count_layers

        return count_layers(name for name, _ in self.plan_parameters())

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def encode(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run encoder layers ``start..stop-1`` over ``hidden``."""
        if isinstance(self.base, bert.BertModel):
            mask = self.base.attention_bias(attention_mask, hidden.dtype)
            if torch.onnx.is_in_onnx_export():  # onnxruntime's Attention (opset 23) does not broadcast the query axis
                mask = mask.expand(-1, -1, hidden.shape[1], -1)
        else:
            from transformers.masking_utils import create_bidirectional_mask

            mask = create_bidirectional_mask(config=self.hf.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in self.base.encoder.layer[start:stop]:
            hidden = layer(hidden, mask)
        return hidden

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            return bert.masked_mean(hidden, attention_mask)
        return self.base.pooler(hidden)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.hf.classifier(self.hf.dropout(pooled))

    def sentence_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """What the classifier reads: the pooled representation of each text."""
        hidden = self.encode(self.embed(input_ids, token_type_ids), attention_mask)
        return self.pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if not self.staged:
            return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits
        return self.classify(self.sentence_vector(input_ids, attention_mask, token_type_ids))

    def save(self, directory: Path) -> None:
        """Write a standard Hugging Face model directory that ``pipeline()`` can load."""
        self._prepare_config()
        if self.pooling == "mean":
            copy_remote_code(directory)
        self.hf.save_pretrained(directory)

    def saved_config(self) -> dict:
        """The ``config.json`` that :meth:`save` writes, as a dict."""
        self._prepare_config()
        return self.hf.config.to_dict()

    def _prepare_config(self) -> None:
        config = self.hf.config
        if isinstance(self.hf, bert.BertForSequenceClassification):  # what transformers' save_pretrained writes
            config.model_type = "freezeframe_bert" if self.pooling == "mean" else "bert"
            config.architectures = [("Freezeframe" if self.pooling == "mean" else "") + "BertForSequenceClassification"]
        if self.pooling == "mean":
            config.freezeframe_pooling = "mean"
            config.auto_map = {"AutoConfig": f"{REMOTE_MODULE}.FreezeframeBertConfig",
                               "AutoModelForSequenceClassification": f"{REMOTE_MODULE}.FreezeframeBertForSequenceClassification"}


class AveragedMembers(nn.Module):
    """Ensemble members as one network: its logits are the log of the members' mean class
    probabilities, so the softmax that prediction, ``pipeline()`` and the ONNX graph apply returns
    exactly that mean.

    Args:
        members: classifiers with the same labels and settings (different seeds).
    """

    kind = "transformer"

    def __init__(self, members: list[EncoderClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def label_names(self) -> list[str]:
        return self.members[0].label_names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        probabilities = torch.stack([m(input_ids, attention_mask, token_type_ids).float().softmax(-1) for m in self.members]).mean(0)
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()

    def save(self, directory: Path) -> None:
        """One Hugging Face directory: ``config.json`` of type ``freezeframe_ensemble`` (the member's own
        config inside), every member's weights in one ``model.safetensors`` under ``members.K.``."""
        from safetensors.torch import save_file

        member = self.members[0].saved_config()
        member.pop("auto_map", None)
        config = {
            "model_type": ENSEMBLE_MODEL_TYPE, "architectures": ["FreezeframeEnsembleForSequenceClassification"],
            "auto_map": {"AutoConfig": f"{REMOTE_MODULE}.FreezeframeEnsembleConfig",
                         "AutoModelForSequenceClassification": f"{REMOTE_MODULE}.FreezeframeEnsembleForSequenceClassification"},
            "members": len(self.members), "member": member,
            "id2label": member["id2label"], "label2id": member.get("label2id") or {v: int(k) for k, v in member["id2label"].items()},
        }
        directory = Path(directory)
        (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        state = {f"members.{k}.{name}": tensor.detach().contiguous().cpu()
                 for k, m in enumerate(self.members) for name, tensor in m.hf.state_dict().items()}
        save_file(state, str(directory / bert.WEIGHTS[0]), metadata={"format": "pt"})
        copy_remote_code(directory)


def copy_remote_code(directory: Path) -> None:
    """Put the classes that ``pipeline(..., trust_remote_code=True)`` needs into a saved model directory."""
    shutil.copyfile(Path(__file__).with_name("hf_modeling.py"), Path(directory) / REMOTE_CODE_FILE)


def load_pretrained(name: str, labels: list[str], pooling: str = "cls", dropout: float | None = None,
                    encoder_dropout: float | None = None) -> tuple[EncoderClassifier, FastTokenizer | SubwordTokenizer]:
    """Load a pretrained encoder with a new classification head for ``labels``.

    Args:
        name: the packaged default, a local model directory, or a hub id in the local cache.
        labels: class names in class-index order.
        pooling: ``cls`` or ``mean``.
        dropout: classifier dropout; ``None`` keeps the encoder's hidden dropout.
        encoder_dropout: hidden and attention dropout inside the encoder; ``None`` keeps the checkpoint's.

    Returns:
        The staged classifier and its tokenizer.
    """
    source = pretrained_source(name)
    check_tokenizer_files(source)
    labelled = {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    raw = bert.read_json(Path(source) / "config.json") if Path(source).is_dir() else None
    overrides = {**labelled, **dropout_settings(raw, dropout, encoder_dropout)}
    if runs_natively(source):
        with _load_errors(name):
            model = bert.BertForSequenceClassification.from_pretrained(Path(source), overrides)
            tokenizer = FastTokenizer(Path(source))
        return _with_new_weights(EncoderClassifier(model, pooling), model.new_weights, model.replaced_head, name), tokenizer
    transformers = import_transformers()
    from freezeframe.hf_modeling import FreezeframeBertConfig, FreezeframeBertForSequenceClassification

    # a BERT configuration that names no model type (TinyBERT's) is one that AutoConfig and AutoTokenizer refuse
    untyped_bert = raw is not None and "model_type" not in raw and bert.model_type(raw) == "bert"
    with _load_errors(name):
        config_class = transformers.BertConfig if untyped_bert else transformers.AutoConfig
        config = config_class.from_pretrained(source, num_labels=len(labels), **overrides)
        if pooling == "mean" and config.model_type == "bert":
            model_class = FreezeframeBertForSequenceClassification
            config = FreezeframeBertConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"})
        elif config.model_type == "bert":
            model_class = transformers.BertForSequenceClassification
        else:
            model_class = transformers.AutoModelForSequenceClassification
        # Train in float32 whatever the checkpoint's storage type; autocast handles mixed precision on GPUs.
        hf_model, loading = model_class.from_pretrained(source, config=config, dtype=torch.float32,
                                                        output_loading_info=True, ignore_mismatched_sizes=True)
        mismatched = {key: tuple(shape) for key, shape, _ in loading.get("mismatched_keys") or ()}
        other = sorted(key for key in mismatched if not key.startswith("classifier."))
        if other:  # only a classifier for other classes may be replaced; anything else is another model's weights
            raise ValueError(f"{other[0]} has shape {mismatched[other[0]]} in the checkpoint, not what its config.json says")
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **({"config": transformers.BertConfig()} if untyped_bert else {}))
    replaced = next((shape[0] for key, shape in mismatched.items() if key.endswith(".weight")), None)
    new_weights = sorted(set(loading.get("missing_keys") or ()) | set(mismatched))
    return _with_new_weights(EncoderClassifier(hf_model, pooling), new_weights, replaced, name), SubwordTokenizer(tokenizer)


def load_tokenizer(name: str) -> FastTokenizer | SubwordTokenizer:
    """The tokenizer of ``--model`` alone, without its weights: an encoder, a cached hub id or a trained directory."""
    source = resolve_model(name)
    check_tokenizer_files(source)
    path = Path(source)
    with _load_errors(name):
        if _lean_bert_allowed() and path.is_dir() and bert.tokenizer_unsupported(path) is None:
            return FastTokenizer(path)
        return SubwordTokenizer(import_transformers().AutoTokenizer.from_pretrained(source))


def _with_new_weights(model: EncoderClassifier, new_weights: list[str], replaced_head: int | None,
                      name: str) -> EncoderClassifier:
    """Record which weights start untrained (freeze plans must not leave them frozen); say when a checkpoint's
    classifier for other classes gave way to a new one."""
    model.new_weights = set(new_weights)
    if replaced_head is not None:
        report(f"{name} has a classifier for {replaced_head} classes; a new one for this data's "
               f"{model.hf.config.num_labels} replaces it")
    return model


def load_trained(directory: Path) -> tuple[EncoderClassifier | AveragedMembers, FastTokenizer | SubwordTokenizer]:
    """Load a classifier directory written by freezeframe (or any HF sequence classifier)."""
    check_tokenizer_files(str(directory))
    directory = Path(directory)
    with _load_errors(str(directory)):
        if _is_ensemble(directory):
            return _load_averaged(directory)
    if runs_natively(str(directory)):
        with _load_errors(str(directory)):
            model = bert.BertForSequenceClassification.from_pretrained(directory, trained=True)
            return EncoderClassifier(model, getattr(model.config, "freezeframe_pooling", "cls")), FastTokenizer(directory)
    transformers = import_transformers()
    from freezeframe.hf_modeling import FreezeframeBertForSequenceClassification

    with _load_errors(str(directory)):
        config = transformers.AutoConfig.from_pretrained(str(directory))
        pooling = getattr(config, "freezeframe_pooling", "cls")
        model_class = FreezeframeBertForSequenceClassification if pooling == "mean" else transformers.AutoModelForSequenceClassification
        hf_model, loading = model_class.from_pretrained(str(directory), config=config, output_loading_info=True)
        if loading["missing_keys"]:  # transformers would start them at random, and predict at random
            head = {key for key in hf_model.state_dict() if not key.startswith(f"{hf_model.base_model_prefix}.")}
            raise (NotAClassifier if head and head <= set(loading["missing_keys"]) else ValueError)(f"its weights lack {min(loading['missing_keys'])} (not a trained classifier)")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    return EncoderClassifier(hf_model, pooling), SubwordTokenizer(tokenizer)


def _is_ensemble(directory: Path) -> bool:
    """Whether ``directory`` holds an ensemble saved by :meth:`AveragedMembers.save`."""
    return bert.read_json(directory / "config.json").get("model_type") == ENSEMBLE_MODEL_TYPE


def _load_averaged(directory: Path) -> tuple[AveragedMembers, FastTokenizer | SubwordTokenizer]:
    """An ensemble saved by :meth:`AveragedMembers.save`, on :mod:`freezeframe.bert` when its members run there."""
    config = bert.read_json(directory / "config.json")
    values, count = dict(config["member"]), int(config["members"])
    source = directory / bert.WEIGHTS[0]
    weights = bert.read_weights(source)
    native = _lean_bert_allowed() and bert.config_unsupported(values) is None and bert.tokenizer_unsupported(directory) is None
    if not native:
        from freezeframe.hf_modeling import build_member

        import_transformers()
    members = []
    for k in range(count):
        prefix = f"members.{k}."
        state = {name.removeprefix(prefix): tensor for name, tensor in weights.items() if name.startswith(prefix)}
        if not state:
            raise ValueError(f"{source.name} has no weights for member {k + 1} (members.{k}.*)")
        if native:
            network = bert.BertForSequenceClassification.from_state(values, state, f"member {k + 1} (members.{k}.*) in {source.name}", trained=True)
        else:
            network = build_member(values)
            missing, unexpected = network.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"member {k + 1} (members.{k}.*) in {source.name} " + (f"lacks {missing[0]}" if missing else f"has an unknown {unexpected[0]}"))
        members.append(EncoderClassifier(network, values.get("freezeframe_pooling", "cls")))
    if native:
        return AveragedMembers(members), FastTokenizer(directory)
    return AveragedMembers(members), SubwordTokenizer(import_transformers().AutoTokenizer.from_pretrained(str(directory)))


@contextlib.contextmanager
def _load_errors(name: str) -> Iterator[None]:
    """A model that fails to load is one line for the user, whichever library failed."""
    from safetensors import SafetensorError

    try:
        yield
    except NotAClassifier as err:  # a pretrained encoder's directory, unless freezeframe trained it (a damaged file)
        raise FreezeframeError(_load_failure(name, err) if (Path(name) / META_FILE).exists() else not_a_classifier(name)) from None
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise FreezeframeError(_load_failure(name, err)) from None


def _load_failure(name: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot load model {name!r}: {first}"
