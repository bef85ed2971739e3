"""What the GAN families' networks share: a generator encoder -> decoder -> encoder2 and a critic.

ResGANAD, GRD-Net and GANomaly each build their own networks (their folders import no other family); this
mixin gives them one definition of the generator's variables (what the generator optimizer updates), of
the checkpoint names of those four networks and of the shared parameter counts.
"""

from __future__ import annotations

import keras


class EncoderDecoderEncoder:
    """Mixin of a networks object with ``encoder``, ``decoder``, ``encoder2`` and ``critic`` attributes
    (Keras models) and a ``build_inference_model()``."""

    encoder: keras.Model
    decoder: keras.Model
    encoder2: keras.Model
    critic: keras.Model

    @property
    def generator_variables(self) -> list:
        """Trainable variables of the generator: encoder + decoder + encoder2."""
        return (
            self.encoder.trainable_variables
            + self.decoder.trainable_variables
            + self.encoder2.trainable_variables
        )

    def gan_checkpoint_parts(self) -> dict[str, keras.Model]:
        """The generator's three networks and the critic, by checkpoint name."""
        return {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "encoder2": self.encoder2,
            "critic": self.critic,
        }

    def gan_parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference model, the generator and the critic."""
        return {
            "inference": int(self.build_inference_model().count_params()),
            "generator": int(sum(int(v.numpy().size) for v in self.generator_variables)),
            "critic": int(self.critic.count_params()),
        }
