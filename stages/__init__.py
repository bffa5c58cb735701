"""The pipeline's stages, one thin script each; dvc.yaml runs them as modules (`python -m stages.NAME`) from the
repo root, so they always import this checkout's `tinygan`, whatever version is installed."""
