"""tinygan: distil a class-conditional GAN (BigGAN-deep-128) into a small student (TinyGAN, Chang & Lu 2020)."""

__version__ = "0.1.0"
