import pytest
import torch

from stg_core.models import build_model, count_parameters


def test_paper_cnn_has_the_parameter_count_of_table_2():
    model = build_model("paper_cnn", 3, 32, 100)
    assert count_parameters(model) == 472_612
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_resnet18_stems():
    cifar = build_model("resnet18_cifar", 3, 32, 10)
    imagenet = build_model("resnet18", 3, 32, 10)
    assert cifar.trunk.conv1.kernel_size == (3, 3) and cifar.trunk.conv1.stride == (1, 1)
    assert isinstance(cifar.trunk.maxpool, torch.nn.Identity)
    assert imagenet.trunk.conv1.kernel_size == (7, 7) and isinstance(imagenet.trunk.maxpool, torch.nn.MaxPool2d)
    x = torch.zeros(2, 3, 32, 32)
    assert cifar(x).shape == imagenet(x).shape == (2, 10)
    # one linear layer of n outputs = n heads on ResNet-18's 512 features
    assert cifar.heads.in_features == 512 and cifar.heads.out_features == 10


@pytest.mark.parametrize("name, shape", [("auto", (1, 8, 8)), ("small_cnn", (1, 8, 8)), ("auto", (1, 28, 28)),
                                         ("paper_cnn", (1, 28, 20)), ("resnet18", (1, 28, 28))])
def test_models_fit_the_image_shapes(name, shape):
    c, h, w = shape
    model = build_model(name, c, (h, w), 7)
    assert model(torch.zeros(3, c, h, w)).shape == (3, 7)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", 3, 32, 2)
    with pytest.raises(ValueError, match="at least 8x8"):
        build_model("paper_cnn", 1, 6, 2)
    with pytest.raises(ValueError, match="n_tasks=0"):
        build_model("small_cnn", 1, 8, 0)
