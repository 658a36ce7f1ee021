"""The component tree of a map's upper level sets, in the depth-first order that turns subtrees into ranges.

The nodes are the connected components (4-connectivity) of the sets
``{u >= lambda}``; a node's subtree is a contiguous range of the preorder, so
questions about subtrees become prefix sums and range-minimum queries
(:class:`RangeMin`). No statistics here: :mod:`sklearn_uflow.acontrario`
scores the nodes.
"""

from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import depth_first_order
from skimage.morphology import max_tree

__all__ = ["ComponentTree", "RangeMin", "component_tree"]


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

    Parameters
    ----------
    u : ndarray of shape (H, W)
        The map, at least 3x3 (skimage's ``max_tree`` needs it).

    Returns
    -------
    tree : ComponentTree
        Its nodes' levels, parents and areas, the owner of each pixel and
        the depth-first order.
    """
    values = np.asarray(u, dtype=np.float64)
    n_pixels = values.size
    parent, order = max_tree(values, connectivity=1)
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
