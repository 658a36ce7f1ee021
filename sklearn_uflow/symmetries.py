"""The symmetries of the image frame, by which a training set can be augmented.

Where normal images come in any pose (parts on a tray, objects at any
angle), a few training images show few of the poses, and every pose not seen
looks anomalous. Fitting on the images' flips and quarter turns as well
teaches the flow the poses it did not see. Where the pose is fixed (a part in
a fixture, lighting from one side), the same copies teach it poses that never
occur. :class:`~sklearn_uflow.UFlowDetector` takes the choice as its
``augmentation`` parameter.

A symmetry is a pair ``(k, flip)``: ``k`` quarter turns counter-clockwise,
then a left-right flip if ``flip``.
"""

import numpy as np

__all__ = ["AUGMENTATIONS", "apply_symmetry", "symmetries"]

AUGMENTATIONS = {
    "none": ((0, False),),
    # the left-right and the up-down flip, and both (a half turn)
    "flips": ((0, False), (0, True), (2, True), (2, False)),
    "quarter_turns": ((0, False), (1, False), (2, False), (3, False)),
    # the dihedral group of the square: every quarter turn, flipped or not
    "eight": tuple((k, flip) for flip in (False, True) for k in range(4)),
}


def symmetries(augmentation, image_size):
    """The symmetries of an augmentation, the identity first.

    ``"flips"`` holds the frame's mirror images and its half turn, which
    every frame has; a quarter turn maps only a square frame onto itself,
    so the augmentations with one are refused on an oblong frame.

    Parameters
    ----------
    augmentation : {"none", "flips", "quarter_turns", "eight"}
        The augmentation.
    image_size : tuple of int
        ``(H, W)`` of the images: a quarter turn maps the frame onto itself
        only when it is square.

    Returns
    -------
    symmetries : tuple of (int, bool)
        ``(k, flip)`` pairs: ``k`` quarter turns counter-clockwise, then a
        left-right flip if ``flip``.

    See Also
    --------
    apply_symmetry : Apply one.

    Examples
    --------
    >>> from sklearn_uflow.symmetries import symmetries
    >>> symmetries("flips", (64, 64))
    ((0, False), (0, True), (2, True), (2, False))
    >>> len(symmetries("eight", (64, 64)))
    8
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {sorted(AUGMENTATIONS)} or 'auto', got {augmentation!r}.")
    chosen = AUGMENTATIONS[augmentation]
    if image_size[0] != image_size[1] and any(k % 2 for k, _ in chosen):
        raise ValueError(f"augmentation={augmentation!r} turns the images by a quarter, which maps a "
                         f"{image_size[0]}x{image_size[1]} frame onto another; use 'flips' or 'none'.")
    return chosen


def apply_symmetry(images, symmetry):
    """Turn and flip images by a symmetry of the frame.

    The eight symmetries of a square frame (four on an oblong one) that
    augmentation draws copies by; they move pixels without resampling.

    Parameters
    ----------
    images : ndarray of shape (n, H, W, ...)
        The images.
    symmetry : (int, bool)
        ``k`` quarter turns counter-clockwise, then a left-right flip if the
        bool is true.

    Returns
    -------
    turned : ndarray of shape (n, H, W, ...) or (n, W, H, ...)
        A C-contiguous copy.

    See Also
    --------
    symmetries : The symmetries of an augmentation.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.symmetries import apply_symmetry
    >>> apply_symmetry(np.array([[[1, 2], [3, 4]]]), (1, False))[0]
    array([[2, 4],
           [1, 3]])
    """
    k, flip = symmetry
    out = np.rot90(images, k, axes=(1, 2))
    return np.ascontiguousarray(out[:, :, ::-1] if flip else out)
