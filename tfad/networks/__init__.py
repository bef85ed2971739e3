"""Network building blocks shared by the families: residual blocks, U-Net, preset selection, FLOP counts."""
