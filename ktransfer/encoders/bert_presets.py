"""Where a BERT checkpoint comes from: resolve a preset name or folder for KerasHub.

`resolve_preset(preset)` maps what a user passes to `BertEncoder.from_preset`
(a ktransfer asset name, a KerasHub preset name or handle, a local KerasHub
preset folder, or a local Hugging Face BERT folder) to what KerasHub loads,
with the GELU the checkpoint declares, and says clearly what is wrong with a
folder that cannot be loaded.
"""

import json
import os

import keras_hub

# Hugging Face `hidden_act` values and the GELU they mean. KerasHub's
# `BertBackbone` hard-codes the tanh approximation, which is right for the
# original Google checkpoints ("gelu_new"-style) but leaves a ~3e-3 drift for
# checkpoints trained with the exact erf GELU (`"gelu"`), such as MiniLM.
HIDDEN_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
}


def resolve_preset(preset):
    """Map `preset` to (what KerasHub loads, the hidden activation or None)."""
    from ktransfer import assets

    if not isinstance(preset, str) or not preset:
        raise ValueError(
            "`preset` must be a non-empty string: a KerasHub preset name, a "
            "local KerasHub preset folder, a local Hugging Face BERT folder, or "
            f"a ktransfer asset name {sorted(assets.ASSETS)}. Received: {preset!r}"
        )
    if preset in assets.ASSETS:
        preset = assets.path(preset)
    if os.path.isdir(preset):
        config_file = os.path.join(preset, "config.json")
        if not os.path.isfile(config_file):
            raise FileNotFoundError(
                f"{preset!r} is a folder but has no config.json, so it is neither "
                "a KerasHub preset folder nor a Hugging Face model folder. Point "
                "`preset` at the folder that holds config.json."
            )
        with open(config_file, encoding="utf-8") as f:
            try:
                config = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{config_file} is not valid JSON: {error}") from None
        if "model_type" in config:  # Hugging Face transformers format
            if config["model_type"] != "bert":
                raise ValueError(
                    f"{preset!r} holds a Hugging Face {config['model_type']!r} model; "
                    "BertEncoder loads BERT checkpoints (model_type 'bert') only."
                )
            missing = [
                name
                for name in ("vocab.txt",)
                if not os.path.isfile(os.path.join(preset, name))
            ]
            weights = ("model.safetensors", "model.safetensors.index.json")
            if not any(os.path.isfile(os.path.join(preset, w)) for w in weights):
                missing.append("model.safetensors")
            if missing:
                raise FileNotFoundError(
                    f"Hugging Face folder {preset!r} lacks {missing}. BertEncoder "
                    "needs config.json, model.safetensors and vocab.txt (PyTorch "
                    "`.bin` weights are not supported: convert them to safetensors)."
                )
            activation = config.get("hidden_act", "gelu")
            if activation not in HIDDEN_ACTIVATIONS:
                raise ValueError(
                    f"{config_file} declares hidden_act={activation!r}; BertEncoder "
                    f"supports {sorted(HIDDEN_ACTIVATIONS)}."
                )
            return preset, HIDDEN_ACTIVATIONS[activation]
        return preset, None
    if os.sep in preset or preset.startswith("."):
        raise FileNotFoundError(
            f"Preset folder {preset!r} does not exist. Check the path, or fetch "
            "the real MiniLM checkpoint with `ktransfer assets fetch minilm` and "
            "use preset='minilm'."
        )
    if "://" in preset:  # kaggle://, hf://, gs:// handles go to KerasHub as is
        return preset, None
    known = sorted(keras_hub.models.BertBackbone.presets)
    if preset not in known:
        raise ValueError(
            f"Unknown preset {preset!r}. Use a local folder (KerasHub preset or "
            "Hugging Face BERT with config.json + model.safetensors + vocab.txt), "
            f"a ktransfer asset name {sorted(assets.ASSETS)}, or a KerasHub BERT "
            f"preset name: {known}."
        )
    return preset, None
