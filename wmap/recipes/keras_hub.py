"""Targets for the `hf_to_keras_hub` recipes: the keras-hub backbone a Hugging Face config describes.

keras-hub's own `TransformersPresetLoader` turns a Hugging Face `config.json` into its backbone's
arguments (`convert_backbone_config`, per family); building the architecture from it is what
`from_preset` does before it converts any weight. Only that part is used here, and no weights are
loaded: the recipe moves the weights, and the tests compare the result with keras-hub's converter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def backbone(config: Mapping[str, Any]) -> Any:
    """The keras-hub backbone for a Hugging Face config (`model_type` picks the family)."""
    from keras_hub.src.utils.transformers.preset_loader import TransformersPresetLoader

    loader = TransformersPresetLoader(None, dict(config))
    return loader.load_backbone(loader.check_backbone_class(), load_weights=False)
