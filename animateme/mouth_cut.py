"""Where a mesh's lips are one surface (a scan, a sculpt), the line to cut them apart along.

The binding already knows each user vertex's side of the mouth (lips.py): along a fused contact
the sides meet in the middle of the contact band. The lip line is where a face of the upper lip
meets a face of the lower lip across an edge; cut there (duplicating the line's vertices for the
lower lip, the corners kept whole), the mouth opens as the face model's does, and each lip then
follows its own lip's motion. `animateme bench-transfer` measures a fused scan both ways with
`cut_open`; in Blender the same cut is Edge > Split Edges on the lip line (README).
"""

from __future__ import annotations

import numpy as np

from animateme_blender.core.lips import NONE, template_sides

UPPER, LOWER = 1, 2
ISLAND = 0.2        # a piece of one lip smaller than this share of that lip's largest is an island


def mouth_side(binding) -> int:
    """The side code of the upper lip (the lower lip's is this + 1): the template's lowest opening."""
    sides = template_sides(binding.rest, binding.faces)
    if not sides.openings:
        return NONE
    centres = [binding.rest[o.loop, 1].mean() for o in sides.openings]
    return 2 * int(np.argmin(centres))


def _polygon_edges(polygons) -> tuple[np.ndarray, np.ndarray]:
    """(E,2) every polygon's edges as sorted vertex pairs, and (E,) the polygon of each."""
    pairs, owner = [], []
    for index, polygon in enumerate(polygons):
        ring = np.asarray(polygon, dtype=np.int64)
        pairs.append(np.stack([ring, np.roll(ring, -1)], axis=1))
        owner.append(np.full(len(ring), index))
    return np.sort(np.concatenate(pairs), axis=1), np.concatenate(owner)


def face_lips(side: np.ndarray, polygons, upper: int) -> np.ndarray:
    """(F,) UPPER / LOWER / 0 for each polygon (a sequence of vertex indices each): the lip most
    of its corners belong to, when at least half do. A small island of one lip inside the other
    (a face or two where the sides meet unevenly) takes the lip around it, so the line is one cut."""
    side = np.asarray(side)
    out = np.zeros(len(polygons), dtype=np.int64)
    for index, polygon in enumerate(polygons):
        codes = side[np.asarray(polygon)]
        ups, lows = int((codes == upper).sum()), int((codes == upper + 1).sum())
        if ups > lows and 2 * ups >= len(codes):
            out[index] = UPPER
        elif lows > ups and 2 * lows >= len(codes):
            out[index] = LOWER
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges, owner = _polygon_edges(polygons)
    _, key = np.unique(edges, axis=0, return_inverse=True)
    key = key.ravel()
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    a, b = owner[order][:-1][same], owner[order][1:][same]          # polygons sharing an edge
    for lip in (UPPER, LOWER):
        keep = (out[a] == lip) & (out[b] == lip)
        graph = coo_matrix((np.ones(keep.sum()), (a[keep], b[keep])), shape=(len(out),) * 2)
        _, piece = connected_components(graph, directed=False)
        members = np.flatnonzero(out == lip)
        if len(members) == 0:
            continue
        sizes = np.bincount(piece[members])
        largest = int(np.argmax(sizes))
        islands = members[(piece[members] != largest) & (sizes[piece[members]] < ISLAND * sizes[largest])]
        out[islands] = UPPER + LOWER - lip
    return out


def lip_line(polygons, lips: np.ndarray) -> np.ndarray:
    """(E,2) the edges (sorted vertex pairs) between an upper-lip and a lower-lip polygon."""
    edges, owner = _polygon_edges(polygons)
    keys, inverse = np.unique(edges, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    lips = np.asarray(lips)[owner]
    has_upper = np.bincount(inverse, lips == UPPER, len(keys)) > 0
    has_lower = np.bincount(inverse, lips == LOWER, len(keys)) > 0
    return keys[has_upper & has_lower]


def cut_open(vertices: np.ndarray, faces: np.ndarray, side: np.ndarray, upper: int):
    """(vertices, faces, source) with the mouth cut open along the lip line: the line's vertices
    duplicated for the lower lip's triangles, except where the line ends inside the surface (the
    corners), so the cut stops there. source: the original vertex of each new one."""
    vertices, faces = np.asarray(vertices), np.asarray(faces, dtype=np.int64)
    lips = face_lips(side, faces, upper)
    line = lip_line(faces, lips)
    if len(line) == 0:
        return vertices, faces, np.arange(len(vertices))
    uses = np.bincount(line.ravel(), minlength=len(vertices))
    # A vertex inside the line (two line edges) opens; an end of the line stays one vertex.
    opens = np.flatnonzero(uses >= 2)
    copy = np.full(len(vertices), -1)
    copy[opens] = len(vertices) + np.arange(len(opens))
    out = faces.copy()
    lower = lips == LOWER
    moved = lower[:, None] & (copy[faces] >= 0)
    out[moved] = copy[faces][moved]
    source = np.concatenate([np.arange(len(vertices)), opens])
    return np.concatenate([vertices, vertices[opens]]), out, source
