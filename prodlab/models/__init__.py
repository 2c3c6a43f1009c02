"""The networks: the DCGAN (chapter 02), the VAEs (chapter 03), the product classifier (chapter 04), the U-Net of
the diffusion models (chapter 08). Each is built from a frozen config dataclass that a checkpoint records."""
