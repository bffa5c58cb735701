"""Profiles: named configurations composed by Hydra from ``conf/`` (DVC's Hydra integration).

``conf/config.yaml`` holds what every profile shares (seed, loss weights) and selects a profile from
``conf/profile/`` (``demo`` by default, ``paper``, ...). ``dvc exp run -S profile=paper`` composes the chosen one
into ``params.yaml`` exactly as ``compose`` does here, so ``params.yaml`` is generated, never edited by hand
(a test keeps the committed file equal to the default composition).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tinygan.errors import TinyGANError

CONF_DIR = "conf"


def names(conf_dir: str | os.PathLike = CONF_DIR) -> list[str]:
    """The profiles available in ``conf/profile/``."""
    return sorted(p.stem for p in (Path(conf_dir) / "profile").glob("*.yaml"))


def compose_yaml(profile: str | None = None, overrides: Sequence[str] = (),
                 conf_dir: str | os.PathLike = CONF_DIR) -> str:
    """The params.yaml text for ``profile`` (None: the default) plus Hydra ``overrides`` (as ``-S`` takes)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf = Path(conf_dir).resolve()
    if not (conf / "config.yaml").is_file():
        raise TinyGANError(f"profiles: {conf}/config.yaml not found; run from the repo root")
    if profile is not None and profile not in names(conf):
        raise TinyGANError(f"profiles: unknown profile {profile!r}; available: {', '.join(names(conf))}")
    ov = ([f"profile={profile}"] if profile else []) + list(overrides)
    try:
        with initialize_config_dir(str(conf), version_base=None):
            cfg = compose(config_name="config", overrides=ov)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinyGANError(f"profiles: cannot compose {conf} with {ov}: {first}") from None
    return OmegaConf.to_yaml(cfg)


def compose(profile: str | None = None, overrides: Sequence[str] = (),
            conf_dir: str | os.PathLike = CONF_DIR) -> dict:
    """The raw params mapping (not yet validated) of ``profile`` plus ``overrides``."""
    import yaml

    return yaml.safe_load(compose_yaml(profile, overrides, conf_dir))
