"""`bert_text`: the text-only BERT reference row (harness decision).

Why: MAG-BERT issue #23 found plain BERT ahead of MAG-BERT on MOSI, so every table gets a
unimodal reference trained under the same protocol. Forward: token ids -> BERT (from
`models/layers/text_encoder.py`) -> last-layer [CLS] state -> Dropout(0.1) -> Linear(hidden ->
n_out). The pooler is built (bert-base-uncased: 109,483,009 parameters) but unused
(108,892,417 receive a gradient). Training: MAG-BERT's `mmsa` settings (Adam, wd 0, batch
32, L1, early stop 8), so the row differs from MAG-BERT only by the gate and the head.

What the BERT fine-tuning baselines share (`BertTextConfig`, `BertClassifier`, the loss, the
no-decay groups and the presets MAG-BERT reuses) is in `models/layers/bert_classifier.py`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from models.base import ModelOutput

from models.layers.bert_classifier import PRESETS as MOSI_MOSEI_PRESETS
from models.layers.bert_classifier import UNSUPPORTED, BertClassifier, BertTextConfig
from models.registry import choice, register_model


class BertText(BertClassifier):
    """Text-only: last-layer [CLS] -> Dropout -> Linear. Audio and vision are never read."""

    modalities: tuple[str, ...] = ("t",)  # the inputs it reads: masking audio/vision changes nothing

    def encode(self, batch) -> dict[str, torch.Tensor]:
        """{"t": last-layer [CLS]}; audio and vision are empty (B, 0) representations."""
        cls = self.text.cls(batch.text_ids, batch.text_mask, batch.text_segment)
        empty = cls.new_zeros(cls.shape[0], 0)
        return {"t": cls, "a": empty, "v": empty}

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(reps["t"]))

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        return ModelOutput(pred=self.fuse(reps), features={"t": reps["t"]})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # text only: audio and vision have no branch
        return {"t": list(self.parameters()), "a": [], "v": []}


# CH-SIMS: the bert_mag sims row of MMSA 2.2.1 config_regression.json (batch_size 32, learning_rate 5e-5,
# pretrained bert-base-chinese) on the MOSI mmsa preset; unaligned_39.pkl (text-only: the setting only picks
# the file); CH-SIMS v2 (harness decision): the same preset with ch-simsv2s.pkl's widths
_SIMS = replace(MOSI_MOSEI_PRESETS[("mosi", "mmsa")], dims=(768, 33, 709), setting="unaligned", lr=5e-5,
                batch_size=32, text_encoder="bert-base-chinese", text_vocab_size=21128)
PRESETS = {**MOSI_MOSEI_PRESETS, ("sims", "mmsa"): _SIMS, ("simsv2", "mmsa"): replace(_SIMS, dims=(768, 25, 177))}

# `bench tune` search space (harness decision): MMSA has no text-only entry; the optimiser rows
# are those of MMSA 2.2.1 config_tune.json `bert_mag`, where these presets come from, and the
# head dropout takes bert_mag's dropout_prob values.
SEARCH_SPACE = {"batch_size": choice(32, 48, 64, source="MMSA 2.2.1 config_tune.json bert_mag"),
                "lr": choice(2e-5, 5e-5, 1e-4, 1e-5, source="MMSA 2.2.1 config_tune.json bert_mag [learning_rate]"),
                "head_dropout": choice(0.1, 0.2, 0.3, 0.4, source="harness decision: bert_mag's dropout_prob values")}


@register_model("bert_text", config=BertTextConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="BERT (text only)",
                family="harness baseline", order=20)
def bert_text(cfg: BertTextConfig) -> BertText:
    """BERT text-only reference: last-layer [CLS] -> Dropout -> Linear."""
    return BertText(cfg)
