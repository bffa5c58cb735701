"""The README's stage table names every stage of dvc.yaml and each declared output."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_stage_table_matches_dvc_yaml():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- stages-table")[1].split("<!-- /stages-table -->")[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", table, re.M)}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(rows) == list(stages)
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage (demo: one per world)
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        for section in ("metrics", "plots"):
            outs += [next(iter(o)) if isinstance(o, dict) else o for o in stage.get(section, [])]
        for out in outs:
            out = out.replace("${item.root}", params["demo"]["imagenet"]["root"])
            top = out if out.count("/") < 2 else "/".join(out.split("/")[:2])
            assert top.split("/")[0] in rows[name] and (out in rows[name] or top in rows[name]
                                                        or out.rsplit("/", 1)[0] in rows[name]), (name, out)
