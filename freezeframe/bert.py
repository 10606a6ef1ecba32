"""A lean BERT: transformers' ``BertForSequenceClassification`` without importing transformers.

Importing transformers' model code takes about 5 s on 2 CPU cores, an eighth of a whole default
training run, and its CPU dropout draws masks with torch's slow Bernoulli sampler (a tenth of every
epoch). For the common case, a BERT checkpoint (``model.safetensors`` or ``pytorch_model.bin``) with
absolute positions and a WordPiece tokenizer (``tokenizer.json``, or ``vocab.txt`` alone as TinyBERT
ships it), freezeframe builds this module instead. It has the same submodules and
parameter names as transformers' class, so freeze plans, the frozen-prefix cache and saved model
directories are unchanged (``transformers.pipeline`` loads what it saves), and the same arithmetic
(tests compare its logits with transformers'). Two things differ, both in speed only:

- on the CPU, dropout masks come from numpy's PCG64 generator (seeded from torch's, so
  ``--seed`` still fixes them): the same Bernoulli(1 - p) keep rate, to 1/65536;
- query, key and value are projected by one matrix product.

Any other model (another architecture, relative positions, another tokenizer) loads through
transformers as before.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from freezeframe.errors import NotAClassifier

WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""Checkpoint files in the order transformers prefers them; ``save_pretrained`` writes the first."""
VOCAB_TOKENIZERS = ("BertTokenizer", "BertTokenizerFast")
"""Tokenizer classes that a bare ``vocab.txt`` can stand for (``BertJapaneseTokenizer``, say, cannot)."""
MODEL_TYPES = ("bert", "freezeframe_bert")
BERT_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "type_vocab_size", "vocab_size")
"""The ``config.json`` keys that make a configuration naming no model type BERT's (see :func:`model_type`)."""
ACTIVATIONS = {
    "gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu,
    "gelu_new": partial(F.gelu, approximate="tanh"), "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
}
CONFIG_DEFAULTS = {
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "type_vocab_size": 2,
    "layer_norm_eps": 1e-12, "initializer_range": 0.02, "max_position_embeddings": 512, "classifier_dropout": None,
    "pad_token_id": 0, "position_embedding_type": "absolute", "model_type": "bert",
}


class BertSettings:
    """A BERT ``config.json`` with its keys as attributes, as transformers' ``BertConfig`` shows them."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(CONFIG_DEFAULTS)
        self.__dict__.update(values)
        labels = values.get("id2label") or {i: f"LABEL_{i}" for i in range(values.get("num_labels", 2))}
        self.id2label = {int(k): v for k, v in labels.items()}
        self.__dict__.pop("num_labels", None)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def to_dict(self) -> dict:
        values = dict(self.__dict__)
        values["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return values


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the hidden states over real (unpadded) tokens: [batch, seq, dim] -> [batch, dim].

    (``hf_modeling.py`` has its own copy: it must run inside a saved model directory without freezeframe.)
    """
    weights = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``{}`` when the file is absent. Anything but an object (a list, a string) is a
    ``ValueError``, as invalid JSON is: every caller reads keys from it."""
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path.name} holds a JSON {type(value).__name__}, not an object")  # noqa: TRY004 - a damaged file, caught with invalid JSON
    return value


def weights_file(directory: Path) -> Path | None:
    """The checkpoint file of ``directory``, or ``None`` when it has neither kind."""
    return next((directory / name for name in WEIGHTS if (directory / name).is_file()), None)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or a ``pytorch_model.bin`` file (loaded with ``weights_only``: no code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors alike
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {path.name}: {first}") from None
    if isinstance(state, dict):
        return state
    raise ValueError(f"{path.name} holds no state dict")  # caught as a load failure, like every reading error


def tokenizer_unsupported(directory: Path) -> str | None:
    """Why the tokenizer in ``directory`` needs transformers, or ``None`` when the ``tokenizers`` library runs it
    (a ``tokenizer.json``, or a bare ``vocab.txt`` of BERT's own tokenizer)."""
    if (directory / "tokenizer.json").is_file():
        return None
    try:
        tokenizer_class = read_json(directory / "tokenizer_config.json").get("tokenizer_class")
    except (OSError, ValueError):
        return "no readable tokenizer_config.json"
    if not (directory / "vocab.txt").is_file():
        return "no tokenizer.json or vocab.txt"
    return None if tokenizer_class in (None, *VOCAB_TOKENIZERS) else f"tokenizer class {tokenizer_class!r}"


def unsupported(directory: Path) -> str | None:
    """Why the model in ``directory`` needs transformers' own classes, or ``None`` when this module runs it."""
    try:
        config = read_json(directory / "config.json")
    except (OSError, ValueError):
        return "no readable config.json"
    if weights_file(directory) is None:
        return f"no {' or '.join(WEIGHTS)}"
    return config_unsupported(config) or tokenizer_unsupported(directory)


def model_type(config: dict) -> str | None:
    """The model type of a ``config.json``. One that names none but has BERT's keys is BERT's: TinyBERT's, as
    huawei-noah ships it, predates the key, and transformers refuses it ("Should have a `model_type` key")."""
    if "model_type" in config:
        return config["model_type"]
    return "bert" if all(key in config for key in BERT_KEYS) else None


def config_unsupported(config: dict) -> str | None:
    """Why a model with this ``config.json`` needs transformers' own classes, or ``None``."""
    reasons = [
        (model_type(config) not in MODEL_TYPES, f"model type {config.get('model_type')!r}"),
        (config.get("position_embedding_type", "absolute") != "absolute", "relative position embeddings"),
        (config.get("hidden_act", "gelu") not in ACTIVATIONS, f"activation {config.get('hidden_act')!r}"),
        (config.get("is_decoder", False) or config.get("add_cross_attention", False), "a decoder"),
    ]
    return next((reason for failed, reason in reasons if failed), None)


_local = threading.local()


@contextlib.contextmanager
def dropout_generator(generator: torch.Generator | None) -> Iterator[None]:
    """Draw this thread's CPU dropout masks from ``generator`` (``None``: torch's global generator), so that
    members training at once in threads each follow their own seed."""
    previous = getattr(_local, "generator", None)
    _local.generator = generator
    try:
        yield
    finally:
        _local.generator = previous


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on the CPU the masks come from numpy's PCG64, several times faster than torch's
    Bernoulli sampler (which took a tenth of an epoch)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    # drawn from torch's generator (or the thread's, see dropout_generator): --seed and resume fix the masks
    seed = int(torch.randint(0, 2**62, (), generator=getattr(_local, "generator", None)))
    words = np.random.PCG64(seed).random_raw((x.numel() + 3) // 4)
    draws = torch.from_numpy(words.view(np.int16)[: x.numel()]).view(x.shape)  # uniform over -32768..32767
    keep = draws >= round(p * 65536) - 32768
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`dropout`'s faster masks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def _embedding(rows: int, size: int, padding_idx: int | None = None) -> nn.Embedding:
    """An embedding table left uninitialised: a checkpoint always fills it (see ``from_state``), and
    ``normal_`` on the meta device would import torch._dynamo, 1.3 s of every run's start."""
    return nn.Embedding(rows, size, padding_idx=padding_idx, _weight=torch.empty(rows, size))


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.word_embeddings = _embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = _embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = _embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = self.token_type_embeddings.weight[0] if token_type_ids is None else self.token_type_embeddings(token_type_ids)
        hidden = self.word_embeddings(input_ids) + types + self.position_embeddings.weight[: input_ids.shape[1]]
        return self.dropout(self.LayerNorm(hidden))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        projected = F.linear(hidden, weight, torch.cat([self.query.bias, self.key.bias, self.value.bias]))
        query, key, value = projected.view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if self.training and self.dropout.p > 0:
            scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(query.shape[-1])) + bias
            context = torch.matmul(self.dropout(scores.softmax(-1)), value)
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return context.transpose(1, 2).reshape(batch, length, width)


class BertSelfOutput(nn.Module):
    """Projection, dropout and the residual LayerNorm (after attention as ``BertSelfOutput``, after the feed-forward as ``BertOutput``)."""

    def __init__(self, config: BertSettings, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, bias), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden))


class BertLayer(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, bias)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)

    @staticmethod
    def attention_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[batch, seq]`` 1/0 mask -> additive ``[batch, 1, 1, seq]`` bias (0 for real tokens)."""
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class BertForSequenceClassification(nn.Module):
    """The modules and parameter names of transformers' class of the same name; ``config`` is a :class:`BertSettings`."""

    base_model_prefix = "bert"

    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    @property
    def base_model(self) -> BertModel:
        return self.bert

    def init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation for weights a checkpoint lacks (the new classifier)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, directory: Path, overrides: dict | None = None, trained: bool = False) -> BertForSequenceClassification:
        """Load a BERT checkpoint (a bare ``BertModel`` or a classifier); weights it lacks start as transformers
        starts them, unless it must be a ``trained`` classifier, which lacks nothing."""
        source = weights_file(directory)
        return cls.from_state({**read_json(directory / "config.json"), **(overrides or {})}, read_weights(source), source, trained)

    @classmethod
    def from_state(cls, values: dict, weights: dict[str, torch.Tensor], source: Path | str,
                   trained: bool = False) -> BertForSequenceClassification:
        """Build from a ``config.json`` dict and a state dict read from ``source`` (named in errors); a
        ``trained`` classifier must have every weight (a new head would predict at random)."""
        config = BertSettings(values)
        config.__dict__.pop("torch_dtype", None)
        config.dtype = "float32"  # trained in float32 whatever the checkpoint's storage type
        with torch.device("meta"):  # no random initialisation of weights the checkpoint replaces
            model = cls(config)
        expected = model.state_dict()
        state = {}
        model.replaced_head = None
        for key, tensor in weights.items():
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            key = key if key.startswith(("bert.", "classifier.")) else f"bert.{key}"
            if key not in expected:  # e.g. a pretraining head, position_ids
                continue
            if tensor.shape != expected[key].shape:
                if key.startswith("classifier.") and not trained:  # a classifier for other classes: a new head replaces it
                    model.replaced_head = int(tensor.shape[0])
                    continue
                raise ValueError(f"{key} has shape {tuple(tensor.shape)} in {source}, expected {tuple(expected[key].shape)}")
            state[key] = tensor.float()
        missing = [k for k in expected if k not in state]
        model.new_weights = missing  # initialised below as transformers would: the checkpoint lacked them
        lacking = missing if trained else [k for k in missing if not k.startswith(("classifier.", "bert.pooler."))]
        if lacking:
            headless = trained and {k for k in expected if k.startswith("classifier.")} <= set(lacking)
            raise (NotAClassifier if headless else ValueError)(
                f"{Path(source).name} lacks {lacking[0]}" + (" (not a trained classifier)" if trained else ""))
        # the model takes the tensors read (each its own copy of the file's bytes); ``to_empty`` would
        # cost a copy of every weight and an import of sympy (0.3 s)
        model.load_state_dict(state, strict=False, assign=True)
        for name in dict.fromkeys(k.rsplit(".", 1)[0] for k in missing):  # a fixed order: the seed fixes the draws
            module = model.get_submodule(name)
            for key, param in list(module.named_parameters(recurse=False)):
                setattr(module, key, nn.Parameter(torch.empty(param.shape, dtype=torch.float32)))
            model.init_weights(module)
        return model

    def save_pretrained(self, directory: Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` as transformers' ``save_pretrained`` does."""
        from safetensors.torch import save_file

        directory = Path(directory)
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS[0]), metadata={"format": "pt"})
