"""tinygan: distil a class-conditional GAN (BigGAN-deep-128) into a small student (TinyGAN, Chang & Lu 2020)."""
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides real messages
# tensorflow_hub imports pkg_resources (hence setuptools<82); its deprecation warning is noise for our users
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

__version__ = "0.1.0"
