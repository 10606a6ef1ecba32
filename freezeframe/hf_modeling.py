"""A BERT sequence classifier whose head reads the masked mean of the last hidden states.

This file is self-contained on purpose: freezeframe copies it into a saved model directory as
``modeling_freezeframe.py`` so that ``transformers.pipeline("text-classification", model=DIR,
trust_remote_code=True)`` can load a mean-pooled model without freezeframe installed.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification
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
