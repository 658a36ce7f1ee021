import copy
import pickle

import numpy as np
import pytest
import timm
import torch
from skimage import data as skdata

from sklearn_uflow import CNNFeatureTransformer, MSCaiTTransformer, split_features
from sklearn_uflow.features import (
    CNN_PRESETS,
    flatten_maps,
    fold_batch_norms,
    lite_imagenet_state_dict,
    make_feature_extractor,
)
from sklearn_uflow._images import check_images
from sklearn_uflow._tensors import images_to_tensor


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_lite2"])
@pytest.mark.parametrize("image, classes", [(skdata.chelsea(), range(281, 286)), (skdata.coffee(), (504, 967, 968))])
def test_lite_weights_are_real_imagenet_weights(backbone, image, classes):
    model = timm.create_model(CNN_PRESETS[backbone], pretrained=False)
    model.load_state_dict(lite_imagenet_state_dict(backbone), strict=True)  # the same renaming, head kept
    model.eval()
    size = model.pretrained_cfg["input_size"][-1]  # 224 and 260
    x = images_to_tensor(check_images(image[None]), size, model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    with torch.no_grad():
        predicted = int(model(x).argmax())
    assert predicted in classes


def test_lite0_preset_shapes_and_rows():
    X = np.random.default_rng(0).integers(0, 256, (3, 48, 40, 3), dtype=np.uint8)
    step = CNNFeatureTransformer(input_size=64, device="cpu").fit(X)
    assert step.feature_shapes_ == [(24, 16, 16), (40, 8, 8), (112, 4, 4)]
    rows = step.transform(X)
    assert rows.shape == (3, step.n_features_out_) and rows.dtype == np.float32
    maps = split_features(rows, step.feature_shapes_)
    for m, direct in zip(maps, step.extract(X)):
        torch.testing.assert_close(m, direct)
    np.testing.assert_array_equal(flatten_maps(maps), rows)
    assert len(step.get_feature_names_out()) == rows.shape[1]
    # deterministic, batch size does not matter
    np.testing.assert_allclose(step.set_params(batch_size=1).transform(X), rows, rtol=1e-4, atol=1e-4)


def test_pooling_averages_each_scale_over_its_window_inside_the_map():
    X = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    raw = CNNFeatureTransformer(input_size=64, pooling=1, device="cpu").fit(X).extract(X)
    pooled = CNNFeatureTransformer(input_size=64, pooling=(3, 5, 1), device="cpu").fit(X).extract(X)
    for m, p, k in zip(raw, pooled, (3, 5, 1)):
        m, r = m.double().numpy(), k // 2
        h, w = m.shape[-2:]
        expected = np.empty_like(m)
        for i in range(h):
            for j in range(w):  # the mean over the window's cells that lie inside the map
                expected[..., i, j] = m[..., max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1].mean(axis=(-2, -1))
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-5, atol=1e-5)
    for bad in (2, 0, (3, 3), (3, 3, 4), "3"):
        with pytest.raises(ValueError, match="pooling"):
            CNNFeatureTransformer(input_size=32, pooling=bad, device="cpu").fit(X)


@pytest.mark.parametrize("backbone", sorted(CNN_PRESETS))
def test_strides_pick_the_backbone_s_feature_maps_at_those_strides(backbone):
    X = np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    every = timm.create_model(CNN_PRESETS[backbone], features_only=True)
    assert every.feature_info.reduction() == [2, 4, 8, 16, 32]  # what CNN_STRIDES assumes of timm
    channels = dict(zip(every.feature_info.reduction(), every.feature_info.channels()))
    torch.manual_seed(0)  # the same random weights for both
    default = CNNFeatureTransformer(backbone, weights="untrained", input_size=64, pooling=1, device="cpu").fit(X)
    assert default.feature_shapes_ == [(channels[s], 64 // s, 64 // s) for s in (4, 8, 16)]
    torch.manual_seed(0)
    two = CNNFeatureTransformer(backbone, weights="untrained", input_size=64, strides=(8, 16), pooling=1,
                                device="cpu").fit(X)
    assert two.feature_shapes_ == default.feature_shapes_[1:]
    for a, b in zip(two.extract(X), default.extract(X)[1:]):  # the same maps, the finest left out
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for bad in ((16, 8), (4, 4), (3,), (), 8, "8"):
        with pytest.raises(ValueError, match="strides"):
            CNNFeatureTransformer(backbone, weights="untrained", input_size=64, strides=bad, device="cpu").fit(X)


def test_auto_pooling_keeps_the_windows_share_of_the_image():
    """3 cells at input size 256, as chosen there; none below; 5 cells at 512."""
    rng = np.random.default_rng(4)
    for size, cells in ((64, 1), (256, 3), (512, 5)):
        X = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        auto = CNNFeatureTransformer(input_size=size, device="cpu").fit(X).extract(X)
        fixed = CNNFeatureTransformer(input_size=size, pooling=cells, device="cpu").fit(X).extract(X)
        for a, f in zip(auto, fixed):
            torch.testing.assert_close(a, f, rtol=0, atol=0)
    with pytest.raises(ValueError, match="input_size"):
        CNNFeatureTransformer(input_size="256", device="cpu").fit(X)


def test_grayscale_is_replicated():
    gray = np.random.default_rng(1).random((2, 32, 32))
    step = CNNFeatureTransformer(input_size=32, device="cpu").fit(gray)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    step_rgb = CNNFeatureTransformer(input_size=32, device="cpu").fit(rgb)
    np.testing.assert_allclose(step.transform(gray), step_rgb.transform(rgb), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="channel"):
        step.transform(rgb)


@pytest.mark.parametrize("backbone, channels", [("resnet18", [64, 128, 256]), ("wide_resnet50_2", [256, 512, 1024])])
def test_resnet_presets_shapes_untrained(backbone, channels):
    X = np.zeros((1, 64, 64, 3), np.uint8)
    step = CNNFeatureTransformer(backbone, weights="untrained", input_size=64, device="cpu").fit(X)
    assert step.feature_shapes_ == [(c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16))]


def test_mscait_shapes_untrained():
    step = MSCaiTTransformer(weights="untrained", device="cpu").fit(np.zeros((1, 32, 32, 3), np.uint8))
    assert step.feature_shapes_ == [(768, 28, 28), (384, 14, 14)]
    fine, coarse = step.model_
    assert len(fine.blocks) == 41 and len(coarse.blocks) == 21


def test_missing_weights_fail_with_a_clear_message(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # Offline with an empty cache. huggingface_hub reads its environment when it is imported (here, with timm, at
    # collection): the variables alone would leave it online, and the test would wait on the network's timeouts.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RuntimeError, match="Could not obtain the ImageNet weights.*weights=.*efficientnet_lite0"):
        CNNFeatureTransformer("resnet18", input_size=32, device="cpu").fit(np.zeros((1, 32, 32, 3)))
    with pytest.raises(FileNotFoundError, match="not found"):
        CNNFeatureTransformer("resnet18", weights=tmp_path / "none.pth", device="cpu").fit(np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="cait_s24_224"):
        MSCaiTTransformer(weights={"cait_m48_448": "x"}).fit(np.zeros((1, 32, 32, 3)))


def _randomize_batch_norms(model, seed):
    """Batch-norm statistics and affine parameters far from the identity of an untrained model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -1, 1), (module.running_var, 0.2, 3),
                                          (module.weight, 0.5, 2), (module.bias, -1, 1)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model.eval()


@pytest.mark.parametrize("backbone", sorted(CNN_PRESETS))
def test_folded_batch_norms_give_the_backbone_s_features(backbone):
    reference = _randomize_batch_norms(timm.create_model(CNN_PRESETS[backbone], features_only=True), 0)
    folded = fold_batch_norms(copy.deepcopy(reference))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())  # every one was folded
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for expected, actual in zip(reference(x), folded(x)):
            torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_local_weights_file_is_loaded(tmp_path):
    source = _randomize_batch_norms(timm.create_model("resnet18", pretrained=False), 2)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    X = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    step = CNNFeatureTransformer("resnet18", weights=path, input_size=32, pooling=1, device="cpu").fit(X)
    x = images_to_tensor(check_images(X), 32, source.pretrained_cfg["mean"], source.pretrained_cfg["std"])
    with torch.no_grad():  # the stem and layers 1 to 3 of the checkpoint's network, run by hand
        y = source.maxpool(source.act1(source.bn1(source.conv1(x))))
        expected = [y := layer(y) for layer in (source.layer1, source.layer2, source.layer3)]
    for actual, want in zip(step.extract(X), expected):
        torch.testing.assert_close(actual, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_presets_and_errors():
    assert isinstance(make_feature_extractor("mscait"), MSCaiTTransformer)
    assert make_feature_extractor("resnet18").backbone == "resnet18"
    with pytest.raises(ValueError, match="extractor="):
        make_feature_extractor("vgg")
    with pytest.raises(ValueError, match="backbone"):
        CNNFeatureTransformer("vgg").fit(np.zeros((1, 8, 8)))


def test_pickle_round_trip_keeps_outputs():
    X = np.random.default_rng(2).random((2, 32, 32, 3))
    step = CNNFeatureTransformer(input_size=32, device="cpu").fit(X)
    clone = pickle.loads(pickle.dumps(step))
    np.testing.assert_array_equal(clone.transform(X), step.transform(X))
    assert step.device == "cpu" and clone.device_.type == "cpu"


def test_input_size_takes_a_height_and_width_or_keeps_the_images_aspect(rng):
    X = rng.integers(0, 256, (2, 111, 290, 3), dtype=np.uint8)
    oblong = CNNFeatureTransformer(input_size=(64, 160), device="cpu").fit(X)
    assert oblong.input_size_ == (64, 160)
    assert oblong.feature_shapes_ == [(24, 16, 40), (40, 8, 20), (112, 4, 10)]
    auto = CNNFeatureTransformer(input_size="auto", device="cpu").fit(X)
    height, width = auto.input_size_
    assert height % 16 == 0 and width % 16 == 0  # every scale halves the next finer one
    assert abs(height / width - 111 / 290) < 0.05 and abs(height * width / 256**2 - 1) < 0.1
    square = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)  # the default: 256x256 for square images
    assert CNNFeatureTransformer(device="cpu").fit(square).input_size_ == (256, 256)
    coarse = CNNFeatureTransformer(input_size="auto", strides=(8, 16, 32), pooling=1, device="cpu").fit(X)
    assert all(side % 32 == 0 for side in coarse.input_size_)
    for bad in ((64,), (64, 8), (64.0, 64)):
        with pytest.raises(ValueError, match="input_size"):
            CNNFeatureTransformer(input_size=bad, device="cpu").fit(X)
