"""T5 v1.1 with its own (untied) language-model head, which transformers 5.x no longer builds.

T5 v1.1 checkpoints (google/t5-v1_1-*) keep an `lm_head` separate from the shared input embedding and do not
rescale the decoder output. transformers 5.23's T5Config forces `tie_word_embeddings=True` (it reads the
saved `false` only to turn the output rescaling off), and T5ForConditionalGeneration ties lm_head to the
shared embedding whenever that flag is set. A v1.1 model built there has 60.5M parameters instead of the
published 77.0M (small), and loading a real v1.1 checkpoint would tie its trained lm_head away.

This class keeps transformers' model and only drops lm_head from the tied-weights map: the encoder and
decoder still share one input embedding, lm_head is a parameter of its own, loaded from the checkpoint's
`lm_head.weight`. Backbones whose `arch` says `tie_word_embeddings: false` and whose model_type is t5 are
built with it (petsweep.model.backbones).
"""

from __future__ import annotations

from transformers import T5ForConditionalGeneration


class UntiedT5ForConditionalGeneration(T5ForConditionalGeneration):
    _tied_weights_keys = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
    }

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self and hasattr(module, "lm_head"):  # T5's init skips lm_head while the flag says tied
            factor = self.config.initializer_factor
            module.lm_head.weight.data.normal_(mean=0.0, std=factor * 1.0)
