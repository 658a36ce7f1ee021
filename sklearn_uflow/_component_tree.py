"""The component tree of a map's upper level sets, and its reduction to the most significant regions.

The nodes are the connected components (4-connectivity) of the sets
``{u >= lambda}``; a node's subtree is a contiguous range of the preorder, so
questions about subtrees become prefix sums and range-minimum queries
(:class:`RangeMin`). :func:`significant_regions` scores the nodes by the law
of :mod:`sklearn_uflow._nfa_law` and keeps the most significant ones (the
paper's procedures 1 and 2).
"""

from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import depth_first_order

from ._nfa_law import NullModel, log10_number_of_tests

try:
    from skimage.morphology import max_tree
except ImportError:  # the runtime (sklearn_uflow.runtime) installs without scikit-image
    max_tree = None

__all__ = ["ComponentTree", "RangeMin", "component_tree", "significant_regions"]


def python_max_tree(image):
    """scikit-image's ``max_tree(image, connectivity=1)``, in Python.

    The same union-find (Berger et al., 2007) over the same stable order of
    the pixels, then the same canonisation, so the same parents: the tree
    and every region drawn from it are those of scikit-image, where it is
    not installed. About a hundred times slower, which a 64x64 latent grid
    affords (a few milliseconds).

    Parameters
    ----------
    image : ndarray of shape (H, W)
        The map.

    Returns
    -------
    parent : ndarray of int64 of shape (H, W)
        Each pixel's parent, as flat indices.
    order : ndarray of int64 of shape (H * W,)
        The pixels by increasing value, ties by index.
    """
    height, width = image.shape
    values = image.ravel().tolist()
    order = np.argsort(image.ravel(), kind="stable")
    parent = [-1] * len(values)
    zpar = [-1] * len(values)
    for p in reversed(order.tolist()):
        parent[p] = zpar[p] = p
        row, column = divmod(p, width)
        for q, inside in ((p - width, row > 0), (p + width, row + 1 < height),
                          (p - 1, column > 0), (p + 1, column + 1 < width)):
            if not inside or zpar[q] < 0:  # outside, or not yet visited
                continue
            root = q
            while zpar[root] != root:
                root = zpar[root]
            while zpar[q] != root:  # path compression
                zpar[q], q = root, zpar[q]
            if root != p:
                zpar[root] = parent[root] = p
    for p in order.tolist():
        q = parent[p]
        if values[parent[q]] == values[q]:
            parent[p] = parent[q]
    return np.array(parent, dtype=np.int64).reshape(height, width), order.astype(np.int64)


class RangeMin:
    """Sparse table: position of the minimum of ``values[l:r]`` in O(1) per
    query, all queries at once. The first minimum wins ties."""

    def __init__(self, values):
        n = len(values)
        self.values = np.append(values, np.inf)  # index n: sentinel for empty ranges
        levels = [np.arange(n)]
        width = 1
        while 2 * width <= n:
            prev = levels[-1]
            left, right = prev[: n - 2 * width + 1], prev[width : n - width + 1]
            levels.append(np.where(self.values[right] < self.values[left], right, left))
            width *= 2
        self.table = np.full((len(levels), n + 1), n)
        for k, level in enumerate(levels):
            self.table[k, : len(level)] = level

    def argmin(self, lo, hi):
        length = hi - lo
        k = np.zeros_like(length)
        k[length > 0] = np.floor(np.log2(length[length > 0])).astype(length.dtype)
        left = self.table[k, lo]
        right = self.table[k, np.maximum(hi - (1 << k), lo)]
        best = np.where(self.values[right] < self.values[left], right, left)
        return np.where(length > 0, best, len(self.values) - 1)


def _preorder(parent, root):
    """Depth-first preorder of a tree given by parent pointers (children in
    increasing index order), and the matching postorder."""
    n = len(parent)
    child = np.flatnonzero(np.arange(n) != root)
    ones = np.ones(len(child))
    graph = sparse.csr_matrix((ones, (parent[child], child)), shape=(n, n))
    graph.sort_indices()
    pre = depth_first_order(graph, root, directed=True, return_predecessors=False)
    # A preorder that visits children in decreasing order, reversed, is the
    # postorder visiting them in increasing order: relabel v -> n-1-v.
    mirrored = sparse.csr_matrix((ones, (n - 1 - parent[child], n - 1 - child)), shape=(n, n))
    mirrored.sort_indices()
    post = (n - 1 - depth_first_order(mirrored, n - 1 - root, directed=True, return_predecessors=False))[::-1]
    return pre, post


def _depth(parent, root):
    """Number of ancestors of each node, by pointer jumping (log-depth rounds)."""
    depth = (np.arange(len(parent)) != root).astype(np.int64)
    up = parent.copy()
    up[root] = root
    while np.any(up != root):
        depth, up = depth + depth[up], up[up]
    return depth


class ComponentTree(NamedTuple):
    """The component tree of the upper level sets of a map.

    Nodes are numbered in raster order of their first pixel; arrays indexed
    by node unless noted.
    """

    level: np.ndarray  #: the node's level, its component's minimum
    parent: np.ndarray  #: parent node (the root is its own parent)
    area: np.ndarray  #: pixels in the component
    owner: np.ndarray  #: per pixel (raveled): the node whose level it has
    preorder: np.ndarray  #: nodes in depth-first preorder
    start: np.ndarray  #: position of the node in ``preorder``
    end: np.ndarray  #: its subtree is ``preorder[start:end]``

    @property
    def root(self):
        return int(self.preorder[0])


def component_tree(u):
    """Component tree of the upper level sets of ``u`` (4-connectivity).

    Each node is a connected component of ``{u >= lambda}`` for a level
    ``lambda`` of the map; its parent is the component of the next lower
    level that contains it. The a contrario test scores every node, so the
    tree lists every region it may detect.

    Parameters
    ----------
    u : ndarray of shape (H, W)
        The map, at least 3x3 (skimage's ``max_tree`` needs it).

    Returns
    -------
    tree : ComponentTree
        Its nodes' levels, parents and areas, the owner of each pixel and
        the depth-first order.

    See Also
    --------
    significant_regions : The tree's most significant regions and their NFA.
    skimage.morphology.max_tree : The max-tree the nodes are read from.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.acontrario import component_tree
    >>> u = np.zeros((3, 5))
    >>> u[1, 1] = u[1, 3] = 2.0
    >>> tree = component_tree(u)
    >>> sorted(tree.area.tolist())  # the two peaks, then the whole map
    [1, 1, 15]
    """
    values = np.asarray(u, dtype=np.float64)
    n_pixels = values.size
    parent, order = max_tree(values, connectivity=1) if max_tree is not None else python_max_tree(values)
    values = values.ravel()
    parent = parent.ravel().astype(np.int64)
    root = int(order[0])
    # Canonical form: every pixel points to the first pixel of its level component.
    while True:
        grand = parent[parent]
        same = (values[grand] == values[parent]) & (parent != root)
        if not np.any(same & (grand != parent)):
            break
        parent = np.where(same, grand, parent)
    pixels = np.arange(n_pixels)
    canonical = (values[parent] != values) | (pixels == root)
    node_id = np.cumsum(canonical) - 1
    node_pixel = np.flatnonzero(canonical)
    owner = node_id[np.where(canonical, pixels, parent)]
    n_nodes = len(node_pixel)
    node_root = int(node_id[root])
    node_parent = node_id[parent[node_pixel]]
    node_parent[node_root] = node_root

    pre, post = _preorder(node_parent, node_root)
    start = np.empty(n_nodes, np.int64)
    start[pre] = np.arange(n_nodes)
    post_position = np.empty(n_nodes, np.int64)
    post_position[post] = np.arange(n_nodes)
    end = post_position + _depth(node_parent, node_root) + 1
    own_pixels = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=n_nodes)[pre])))
    area = own_pixels[end] - own_pixels[start]
    return ComponentTree(values[node_pixel], node_parent, area, owner, pre, start, end)


def significant_regions(u, df, total_pixels=None, null=None):
    """Most significant regions of one scale and their ``log10 NFA``.

    The regions are nodes of the component tree of ``u``
    (:func:`component_tree`), each scored by its probability of false alarm
    under the null law and the number of tests of its size; of nested
    regions the most significant survives, as the paper's pruning and
    merging keep it.

    Parameters
    ----------
    u : ndarray of shape (H, W)
        ``sum_k z_k^2`` at each pixel.
    df : int
        Number of latent channels ``C`` (degrees of freedom); unused when
        ``null`` is given.
    total_pixels : int, default=None
        Pixels of all scales together (for the number of tests); default
        this scale's.
    null : NullModel, default=None
        The law of ``u`` under normality; default ``NullModel.theory(df)``.
        Region sizes are then counted in independent units of
        ``null.area`` pixels; positions are still counted in pixels.

    Returns
    -------
    labels : ndarray of int64, shape (H, W)
        0 outside the selected regions, ``k + 1`` inside region ``k``.
    log_nfa : ndarray of float64, shape (n_regions,)
        ``log10 N_T(|R|) + |R| * log10 P(chi2_C >= min_R u)`` of each region
        (with a null model: ``|R|`` in units of its area, ``chi2`` scaled).

    See Also
    --------
    component_tree : The regions it chooses among.
    log_nfa_maps : The regions of every scale, merged into maps.

    Notes
    -----
    The nodes of the component tree are the connected components of the
    upper level sets ``{u >= lambda}``; a node is more significant when its
    NFA is lower. The paper's procedures are: (1)
    replace each branch that hangs from a leaf through single-child nodes by
    its most significant node; (2) when all children of a node are leaves and
    the node is at least as significant as each of them, replace them by the
    node; repeat until nothing changes. Following the procedures bottom-up
    shows that a subtree ends as a single leaf exactly when no node with two
    or more children inside it is less significant than one of its
    descendants, and that leaf is then the subtree's most significant node.
    The final leaves are the maximal such subtrees. With the nodes in
    depth-first preorder every subtree is a contiguous range, so all of this
    is prefix sums and range-minimum queries: no recursion and no Python loop
    over nodes.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.acontrario import significant_regions
    >>> u = np.full((8, 8), 1.0)
    >>> u[2:4, 2:4] = 60.0  # four pixels far in the chi2(2) tail
    >>> labels, log_nfa = significant_regions(u, df=2)
    >>> int((labels == 1).sum()), bool(log_nfa[0] < 0)
    (4, True)
    """
    u = np.asarray(u, dtype=np.float64)
    pixels = u.size
    margin = 2 if min(u.shape) < 3 else 0
    if margin:
        # skimage's max_tree needs 3 pixels a side: frame the map with a
        # level below all others, which only adds pixels to the root.
        u = np.pad(u, margin, constant_values=u.min() - 1)
    tree = component_tree(u)
    n_nodes = len(tree.level)
    pre, start, end = tree.preorder, tree.start, tree.end
    null = null or NullModel.theory(df)
    observations = np.maximum(tree.area / null.area, 1.0)
    # Positions are counted in pixels, shapes in independent units: shapes
    # that differ below the correlation scale are the same test.
    log_nfa = log10_number_of_tests(observations, pixels, total_pixels or pixels)
    log_nfa += observations * null.log10_sf(tree.level)

    root = tree.root
    n_children = np.bincount(tree.parent[np.arange(n_nodes) != root], minlength=n_nodes)
    lowest = RangeMin(log_nfa[pre])
    below = lowest.values[lowest.argmin(start + 1, end)]
    blocking = (n_children >= 2) & (log_nfa > below)
    blocked = np.concatenate(([0], np.cumsum(blocking[pre])))
    collapses = (blocked[end] - blocked[start]) == 0
    final = collapses & (~collapses[tree.parent] | (np.arange(n_nodes) == root))
    final = np.flatnonzero(final)
    best = pre[lowest.argmin(start[final], end[final])]

    # Mark each chosen region's preorder range, then map nodes back to pixels.
    marks = np.zeros(n_nodes + 1, np.int64)
    region = np.arange(1, len(best) + 1)
    np.add.at(marks, start[best], region)
    np.add.at(marks, end[best], -region)
    node_label = np.empty(n_nodes, np.int64)
    node_label[pre] = np.cumsum(marks[:-1])
    labels = node_label[tree.owner].reshape(u.shape)
    if margin:
        labels = labels[margin:-margin, margin:-margin]
    return labels, log_nfa[best]
