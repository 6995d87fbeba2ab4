import pytest
import torch

from stg_core.models import Dropout, build_model, count_parameters, paper_cnn, small_cnn


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


@pytest.mark.parametrize("name, shape", [("paper_cnn", (3, 32, 32)), ("small_cnn", (1, 8, 8)), ("auto", (1, 8, 16))])
def test_feature_dim_sets_the_units_every_head_reads(name, shape):
    c, h, w = shape
    default, narrow = build_model(name, c, (h, w), 5), build_model(name, c, (h, w), 5, feature_dim=8)
    fc = [m for m in narrow.trunk if isinstance(m, torch.nn.Linear)]
    assert len(fc) == 1 and fc[0].out_features == 8 and narrow.heads.in_features == 8
    assert default.heads.in_features == 128
    assert narrow(torch.zeros(2, c, h, w)).shape == (2, 5)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", 3, 32, 2)
    with pytest.raises(ValueError, match="at least 8x8"):
        build_model("paper_cnn", 1, 6, 2)
    with pytest.raises(ValueError, match="n_tasks=0"):
        build_model("small_cnn", 1, 8, 0)
    with pytest.raises(ValueError, match=r"feature_dim=64 applies to paper_cnn and small_cnn only "
                                         r"\(not resnet18, which has 512 features\)"):
        build_model("resnet18", 3, 32, 2, feature_dim=64)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"feature_dim={bad!r} must be a positive integer"):
            build_model("paper_cnn", 3, 32, 2, feature_dim=bad)


@pytest.mark.parametrize("factory, shape", [(paper_cnn, (3, 32, 32)), (small_cnn, (1, 8, 8))])
def test_fast_layout_computes_the_original_function_and_gradients(factory, shape):
    """ReLU after the pool (and the CPU dropout mask) vs Table 2's literal order with nn.Dropout:
    the same state_dict, the same outputs, the same gradients (BatchNorm on batch statistics;
    dropout off, since the two draw their masks differently)."""
    torch.manual_seed(0)
    fast = factory(shape[0], shape[1:], 5)
    original = factory(shape[0], shape[1:], 5, original_layout=True)
    assert list(fast.state_dict()) == list(original.state_dict())
    original.load_state_dict(fast.state_dict())
    assert any(isinstance(m, Dropout) for m in fast.modules())
    assert not any(isinstance(m, Dropout) for m in original.modules())
    x = torch.randn(16, *shape)
    grads = []
    for model in (fast, original):
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


def test_cpu_dropout_keeps_the_expectation_and_rate():
    torch.manual_seed(0)
    layer = Dropout(0.2).train()
    x = torch.ones(200, 1000)
    y = layer(x)
    assert abs(float((y == 0).float().mean()) - 0.2) < 0.01          # the drop rate
    assert abs(float(y.mean()) - 1.0) < 0.02                          # kept values scaled by 1/keep
    assert torch.equal(y[y != 0], torch.full_like(y[y != 0], 1 / 0.8))
    assert torch.equal(layer.eval()(x), x)
    # bf16 activations (CPU autocast): the draw stays fp32, so the rate is unbiased (a bf16 draw
    # keeps 0.8006 of 4M values here, 3 standard errors off)
    y16 = layer.train()(torch.ones(4_000_000, dtype=torch.bfloat16))
    assert y16.dtype == torch.bfloat16 and abs(float((y16 != 0).float().mean()) - 0.8) < 0.0004
