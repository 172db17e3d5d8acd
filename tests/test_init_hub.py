"""`init_source="hf-hub:…"` through timm's own Hub loader, against the local Hub-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hub_server import LocalHub

TOKEN = "hf_InitSourceTestToken"

CODE = """
import sys, torch, timm, timm_transfusion
from huggingface_hub import HfApi
from safetensors.torch import load_file
weights, folder = sys.argv[1], sys.argv[2]
source = timm.create_model("mobilenetv1_025", init="pretrained", init_source=weights)
timm.models.save_for_hf(source, folder)
HfApi(token=sys.argv[3]).create_repo("alice/mnv1-src")
HfApi(token=sys.argv[3]).upload_folder(repo_id="alice/mnv1-src", folder_path=folder)
model = timm.create_model("mobilenetv1_025", init="transfusion-1", init_source="hf-hub:alice/mnv1-src",
                          init_seed=0, num_classes=5)
random = timm.create_model("mobilenetv1_025", init="random", init_seed=0, num_classes=5)
real = load_file(weights)
import json; print(json.dumps({"stem": torch.equal(model.conv_stem.weight, real["conv_stem.weight"]),
       "block0": torch.equal(model.blocks[0][0].conv_pw.weight, real["blocks.0.0.conv_pw.weight"]),
       "block1_random": torch.equal(model.blocks[1][0].conv_pw.weight, random.blocks[1][0].conv_pw.weight)}))
"""


def test_hf_hub_source_is_loaded_through_timm(tmp_path, mobilenet_weights):
    hub = LocalHub(tokens={TOKEN: "alice"}).start()
    try:
        env = dict(
            os.environ,
            HF_ENDPOINT=hub.url,
            HF_HOME=str(tmp_path / "hf"),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        env.pop("HF_HUB_OFFLINE", None)
        args = [str(mobilenet_weights), str(tmp_path / "src"), TOKEN]
        result = subprocess.run(
            [sys.executable, "-c", CODE, *args], env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        hub.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    flags = json.loads(result.stdout.strip().splitlines()[-1])
    assert flags == {"stem": True, "block0": True, "block1_random": True}
