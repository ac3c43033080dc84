"""Encoder task heads that transformers does not ship: mean pooling, how sentence encoders are trained.

`pooling: pooler` (the default) uses the model's own *ForSequenceClassification class, which classifies
from the [CLS] token through the pretrained pooler. Sentence-transformers models (all-MiniLM-*) were
trained with mean pooling and no pooler: read through [CLS], their first layers give nearly the same
vector for every input, so a depth-cut family cannot learn. `pooling: mean` averages the last hidden
states over real tokens instead, and drops the unused pooler so that no count includes it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from petsweep.spec.backbone import POOLINGS

__all__ = ["POOLINGS", "MeanPoolClassifier"]


class MeanPoolClassifier(nn.Module):
    """encoder -> mean over attended tokens -> dropout -> linear (cross-entropy, or MSE for one output).

    The encoder is registered under its own `base_model_prefix` (e.g. `bert`) and the linear layer as
    `classifier`, so parameter names match the model's own classification class: LoRA target regexes,
    head detection and checkpoints work unchanged.
    """

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.base_model_prefix = encoder.base_model_prefix
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # never read with mean pooling: neither trained nor counted
        setattr(self, self.base_model_prefix, encoder)
        config = self.config = encoder.config
        self.num_labels = num_labels
        self.dropout = nn.Dropout(getattr(config, "classifier_dropout", None) or config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels, dtype=encoder.dtype)
        if self.classifier.weight.device.type != "meta":
            nn.init.normal_(self.classifier.weight, std=config.initializer_range)  # as transformers' heads
            nn.init.zeros_(self.classifier.bias)

    @property
    def encoder_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder_model.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        # input_ids or inputs_embeds (a soft prompt hands the encoder embeddings)
        hidden = self.encoder_model(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        # a prefix (keys and values before the input, no output positions) lengthens the mask on the left:
        # the last columns are the tokens the encoder outputs
        mask = attention_mask[:, -hidden.shape[1] :].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
