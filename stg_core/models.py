"""Shared-trunk multi-head networks: a trunk of features, then one linear layer whose n
outputs are the n task heads (one logit per binary task)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from stg_core.validation import is_integer

MODEL_NAMES = ("auto", "paper_cnn", "small_cnn", "resnet18_cifar", "resnet18")


class MultiHeadNet(nn.Module):
    """``trunk`` maps images ``(B, C, H, W)`` to features ``(B, feature_dim)``; ``heads`` is one
    ``Linear(feature_dim, n_tasks)``: column j of its weight is task j's head."""

    def __init__(self, trunk: nn.Module, feature_dim: int, n_tasks: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = nn.Linear(feature_dim, n_tasks)

    @property
    def n_tasks(self) -> int:
        return self.heads.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_tasks)``."""
        return self.heads(self.trunk(x))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU: ``rand < keep`` times ``1 / keep``.

    ``F.dropout``'s ``bernoulli_`` is slow on the CPU (docs/benchmarks.md). Same expectation and
    mask distribution (the uniform draw is fp32 whatever the activation's dtype); a different
    random stream. Elsewhere (CUDA) it is ``F.dropout``, already fused there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        keep = 1.0 - self.p
        if keep == 0.0:
            return torch.zeros_like(x)
        # The uniform draw in fp32 even under bf16 autocast: bf16 noise would bias the keep rate.
        mask = torch.rand(x.shape, device=x.device).lt_(keep).mul_(1.0 / keep)
        return x * mask.to(x.dtype)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _conv_bn_relu_pool(c_in: int, c_out: int, kernel: int, padding: int, original_layout: bool) -> list[nn.Module]:
    """Conv BN ReLU MaxPool2. Unless ``original_layout``, the ReLU comes after the pool: max
    and ReLU commute (ReLU is monotone), so outputs and gradients are the same, and the ReLU
    and its backward touch 4x fewer values."""
    conv, norm, relu = _conv_bn_relu(c_in, c_out, kernel, padding)
    return [conv, norm, relu, nn.MaxPool2d(2)] if original_layout else [conv, norm, nn.MaxPool2d(2), relu]


def _hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


#: Units of the CNNs' last fully connected layer (the paper's Table 2): the features the heads read.
CNN_FEATURE_DIM = 128


def _classifier(in_features: int, feature_dim: int, original_layout: bool) -> list[nn.Module]:
    """Flatten, Dropout 0.2, FC ``feature_dim``, ReLU, Dropout 0.2 (``nn.Dropout`` if ``original_layout``)."""
    dropout = nn.Dropout if original_layout else Dropout
    return [nn.Flatten(), dropout(0.2), nn.Linear(in_features, feature_dim), nn.ReLU(inplace=True), dropout(0.2)]


def paper_cnn(in_channels: int, image_size: int | tuple[int, int], n_tasks: int, *,
              feature_dim: int = CNN_FEATURE_DIM, original_layout: bool = False) -> MultiHeadNet:
    """The custom CNN of the paper's Table 2 (472,612 parameters for 100 tasks on 3x32x32):
    Conv5x5(32, no padding) BN ReLU MaxPool2, Conv3x3(64) BN ReLU, Conv3x3(64) BN ReLU, MaxPool2,
    Flatten, Dropout 0.2, FC 128 (``feature_dim``), ReLU, Dropout 0.2, FC n.

    The same function, faster: each ReLU before a pool runs after it, and dropout draws its
    mask the cheap way on the CPU (:class:`Dropout`). ``original_layout=True`` builds the
    literal Table 2 order with ``nn.Dropout`` (same parameters and state_dict keys)."""
    h, w = (((s - 4) // 2) // 2 for s in _hw(image_size))
    if min(h, w) < 1:
        raise ValueError(f"paper_cnn needs images of at least 8x8 pixels, got {image_size}")
    trunk = nn.Sequential(
        *_conv_bn_relu_pool(in_channels, 32, 5, 0, original_layout),
        *_conv_bn_relu(32, 64, 3, 1),
        *_conv_bn_relu_pool(64, 64, 3, 1, original_layout),
        *_classifier(64 * h * w, feature_dim, original_layout),
    )
    return MultiHeadNet(trunk, feature_dim, n_tasks)


def small_cnn(in_channels: int, image_size: int | tuple[int, int], n_tasks: int, *,
              feature_dim: int = CNN_FEATURE_DIM, original_layout: bool = False) -> MultiHeadNet:
    """A small CNN for tiny images (8x8 digits): three padded 3x3 convolutions, two pools
    (ReLUs after the pools unless ``original_layout``, as in :func:`paper_cnn`), then the
    paper CNN's classifier with ``feature_dim`` units."""
    h, w = (s // 4 for s in _hw(image_size))
    if min(h, w) < 1:
        raise ValueError(f"small_cnn needs images of at least 4x4 pixels, got {image_size}")
    trunk = nn.Sequential(
        *_conv_bn_relu(in_channels, 32, 3, 1),
        *_conv_bn_relu_pool(32, 64, 3, 1, original_layout),
        *_conv_bn_relu_pool(64, 64, 3, 1, original_layout),
        *_classifier(64 * h * w, feature_dim, original_layout),
    )
    return MultiHeadNet(trunk, feature_dim, n_tasks)


def resnet18(in_channels: int, image_size: int | tuple[int, int], n_tasks: int, *, cifar_stem: bool) -> MultiHeadNet:
    """torchvision's ResNet-18 from scratch with ``fc`` as the task heads.

    ``cifar_stem=True`` replaces the 7x7 stride-2 stem and its max-pool by one 3x3 stride-1
    convolution (the usual CIFAR adaptation; the original STG-MTL code keeps the ImageNet stem,
    which leaves a 1x1 feature map on 32x32 images)."""
    net = torchvision.models.resnet18(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return MultiHeadNet(net, feature_dim, n_tasks)


def resolve_model_name(name: str, image_size: int | tuple[int, int]) -> str:
    if name == "auto":
        return "small_cnn" if min(_hw(image_size)) <= 16 else "paper_cnn"
    return name


def check_feature_dim(name: str, feature_dim: int | None) -> None:
    """``ValueError`` unless ``feature_dim`` is None or a positive int for a CNN model ``name``
    (``"auto"`` resolves to one of the CNNs); ResNet-18's 512 features are fixed."""
    if feature_dim is None:
        return
    if name.startswith("resnet"):
        raise ValueError(f"feature_dim={feature_dim} applies to paper_cnn and small_cnn only (not {name}, which "
                         "has 512 features)")
    if not is_integer(feature_dim) or feature_dim < 1:
        raise ValueError(f"feature_dim={feature_dim!r} must be a positive integer number of units, or None (the "
                         f"paper's {CNN_FEATURE_DIM})")


def build_model(name: str, in_channels: int, image_size: int | tuple[int, int], n_tasks: int, *,
                feature_dim: int | None = None) -> MultiHeadNet:
    """Model ``name`` (one of :data:`MODEL_NAMES`) for images ``(in_channels, H, W)`` with
    ``image_size`` = ``(H, W)`` (or one int for square images) and ``n_tasks`` heads.
    ``feature_dim``: units of the CNNs' last fully connected layer (None: the paper's 128);
    ResNet-18's 512 features are fixed."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    if n_tasks < 1:
        raise ValueError(f"n_tasks={n_tasks} must be at least 1")
    name = resolve_model_name(name, image_size)
    check_feature_dim(name, feature_dim)
    width = CNN_FEATURE_DIM if feature_dim is None else feature_dim
    if name == "paper_cnn":
        return paper_cnn(in_channels, image_size, n_tasks, feature_dim=width)
    if name == "small_cnn":
        return small_cnn(in_channels, image_size, n_tasks, feature_dim=width)
    return resnet18(in_channels, image_size, n_tasks, cifar_stem=name == "resnet18_cifar")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
