"""tinygan: distil a class-conditional GAN (BigGAN-deep-128) into a small student (TinyGAN, Chang & Lu 2020)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides real messages

__version__ = "0.1.0"
