"""A BERT sequence classifier whose head reads the masked mean of the last hidden states, and an
ensemble of sequence classifiers saved as one model.

This file is self-contained on purpose: freezeframe copies it into a saved model directory as
``modeling_freezeframe.py`` so that ``transformers.pipeline("text-classification", model=DIR,
trust_remote_code=True)`` can load a mean-pooled model or an ensemble without freezeframe installed.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the hidden states over real (unpadded) tokens: [batch, seq, dim] -> [batch, dim]."""
    weights = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class FreezeframeBertConfig(BertConfig):
    """BertConfig under a model type of its own: without this code (``trust_remote_code``), loading
    fails loudly instead of silently building a [CLS]-pooled BertForSequenceClassification."""

    model_type = "freezeframe_bert"


class FreezeframeBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification with mean pooling in place of the [CLS] pooler."""

    config_class = FreezeframeBertConfig

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True)
        pooled = masked_mean(outputs.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class FreezeframeEnsembleConfig(PretrainedConfig):
    """``members`` classifiers that share one configuration, ``member`` (a ``config.json`` dict)."""

    model_type = "freezeframe_ensemble"

    def __init__(self, member: dict | None = None, members: int = 1, **kwargs):
        self.member = dict(member or {})
        self.members = members
        super().__init__(**kwargs)


def build_member(values: dict) -> PreTrainedModel:
    """An untrained sequence classifier from a member's ``config.json`` dict."""
    values = {k: v for k, v in values.items() if k not in ("auto_map", "architectures")}
    model_type = values.pop("model_type", "bert")
    if model_type == FreezeframeBertConfig.model_type:
        return FreezeframeBertForSequenceClassification(FreezeframeBertConfig(**values))
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **values))


class FreezeframeEnsembleForSequenceClassification(PreTrainedModel):
    """Averages the class probabilities of its members; ``logits`` are the log of that mean, so the
    softmax a pipeline applies returns exactly the mean."""

    config_class = FreezeframeEnsembleConfig
    base_model_prefix = "ensemble"

    def __init__(self, config: FreezeframeEnsembleConfig):
        super().__init__(config)
        self.members = torch.nn.ModuleList(build_member(config.member) for _ in range(config.members))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        probabilities = torch.stack([member(input_ids, attention_mask=attention_mask, **extra).logits.float().softmax(-1)
                                     for member in self.members]).mean(0)
        logits = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
        loss = None
        if labels is not None:
            loss = torch.nn.functional.nll_loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
