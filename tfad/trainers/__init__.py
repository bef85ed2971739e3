"""Trainer bases shared by the families: the GAN base, the supervised base, geometric augmentation."""
