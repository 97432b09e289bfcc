"""Spiral orderings of a fixed-topology mesh (Potamias et al. §3.1, after Bouritsas et al.).

A spiral convolution gathers, for every vertex v, the features of a fixed-length sequence of
vertices around it and applies one linear layer. The sequence is

    ring0(v) = [v],  ring(k+1)(v) = N(ring k) - disk k,  disk k = ring0 ∪ ... ∪ ring k   (eq. 1)
    S(v) = ring0(v), ring1(v), ring2(v), ...                                          (eq. 2)

truncated or padded to a fixed length L. Within each ring the order is fixed so that the same
position means the same direction on every vertex:

* orientation: counter-clockwise about the outward normal, read from the faces' winding (a face
  (a, b, c) is counter-clockwise seen from outside), so mirroring the winding reverses every ring;
* start of ring 1: the neighbour through which the shortest geodesic path (Dijkstra on edge
  lengths) from v to a fixed reference vertex leaves v; ties go to the lower vertex index. The
  reference itself starts at its lowest-index neighbour, and a vertex in a connected component
  without the reference uses that component's lowest-index vertex as its reference;
* later rings continue the spiral: ring k+1 is collected by walking ring k in order and, around
  each of its vertices u (counter-clockwise, starting at a neighbour one ring further in), taking
  the neighbours not yet in the spiral. On a regular patch this lists ring k+1 counter-clockwise
  about v, beginning beside where ring k began.

Padding: a spiral that runs out of vertices before L (a tiny mesh, a small component) is filled
with v itself. Networks gather with these indices, so padding must be a valid index, and repeating
the centre adds no information from elsewhere on the mesh.

Open boundaries (mouth, eyes, the outer rim) make a vertex's one-ring an open fan; its neighbours
are then listed along the fan, counter-clockwise, and walked as if the gap closed the loop.
"""

from __future__ import annotations

import heapq

import numpy as np

from animateme_blender.core.errors import AnimateMeError


def compute_spirals(faces: np.ndarray, num_vertices: int, length: int, reference_vertex: int,
                    vertices: np.ndarray | None = None) -> np.ndarray:
    """(V, length) int32 spiral of every vertex; row v starts with v itself.

    faces: (F,3) triangles, consistently wound; vertices: (V,3) positions for geodesic edge
    lengths (every edge counts 1 when None).
    """
    faces = check_faces(faces, num_vertices)
    length = int(length)
    if length < 1:
        raise AnimateMeError(f"spiral length must be at least 1, got {length}")
    if not 0 <= int(reference_vertex) < num_vertices:
        raise AnimateMeError(
            f"reference vertex {reference_vertex} is not a vertex of this {num_vertices}-vertex mesh: "
            f"choose one in 0..{num_vertices - 1}")
    if vertices is not None:
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.shape != (num_vertices, 3) or not np.all(np.isfinite(vertices)):
            raise AnimateMeError(
                f"vertices for spiral edge lengths must be finite with shape ({num_vertices}, 3), "
                f"got {vertices.shape}: pass the mesh's own rest positions")

    neighbours = vertex_neighbours(faces, num_vertices)
    weights = _edge_weights(neighbours, vertices)
    distance = _distances_to_references(neighbours, weights, int(reference_vertex))

    spirals = np.empty((num_vertices, length), dtype=np.int32)
    for v in range(num_vertices):
        order = [v]
        for ring in rings(neighbours, v, length, start=_first_step(v, neighbours, weights, distance)):
            order.extend(ring)
            if len(order) >= length:
                break
        order = order[:length]
        order.extend([v] * (length - len(order)))  # padding: the centre itself
        spirals[v] = order
    return spirals


def check_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,3) int64 copy of `faces`, or an AnimateMeError saying what is wrong with them."""
    if int(num_vertices) != num_vertices or num_vertices < 1:
        raise AnimateMeError(f"a mesh needs at least one vertex, got num_vertices={num_vertices}")
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise AnimateMeError(f"faces must be a non-empty (F, 3) array of triangles, got shape {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        if not (np.issubdtype(faces.dtype, np.floating) and np.all(faces == np.round(faces))):
            raise AnimateMeError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    bad = np.flatnonzero((faces < 0).any(axis=1) | (faces >= num_vertices).any(axis=1))
    if bad.size:
        raise AnimateMeError(
            f"face {bad[0]} {faces[bad[0]].tolist()} refers to a vertex outside 0..{num_vertices - 1} "
            f"({bad.size} such faces): the faces do not belong to this {num_vertices}-vertex mesh")
    repeated = np.flatnonzero((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2])
                              | (faces[:, 0] == faces[:, 2]))
    if repeated.size:
        raise AnimateMeError(
            f"face {repeated[0]} {faces[repeated[0]].tolist()} repeats a vertex ({repeated.size} such "
            "faces): remove degenerate faces from the mesh first")
    return faces


def vertex_neighbours(faces: np.ndarray, num_vertices: int) -> list[list[int]]:
    """Each vertex's one-ring, counter-clockwise about the outward normal.

    Around v, a face (v, a, b) (rotated so v comes first) is the step a -> b of the ring. On an
    open boundary the ring is an open fan and is listed from its first to its last vertex. A
    non-manifold vertex (several fans meeting at one point) lists its fans one after another,
    lowest-index starts first, so the result is still deterministic.
    """
    faces = check_faces(faces, num_vertices)
    steps: list[dict[int, int]] = [dict() for _ in range(num_vertices)]
    for a, b, c in faces.tolist():
        for v, x, y in ((a, b, c), (b, c, a), (c, a, b)):
            steps[v].setdefault(x, y)  # a repeated step means a non-manifold edge: keep the first
    return [_walk_fans(step) for step in steps]


def _walk_fans(step: dict[int, int]) -> list[int]:
    if not step:
        return []
    nodes = set(step) | set(step.values())
    has_previous = set(step.values())
    # Fans that open on a boundary start where nothing leads in; closed loops anywhere.
    starts = sorted(n for n in nodes if n not in has_previous) + sorted(nodes)
    order: list[int] = []
    seen: set[int] = set()
    for start in starts:
        node = start
        while node is not None and node not in seen:
            seen.add(node)
            order.append(node)
            node = step.get(node)
    return order


def rings(neighbours: list[list[int]], centre: int, count: int, start: int | None = None) -> list[list[int]]:
    """Rings 1, 2, ... of `centre` (eq. 1), ordered as the module docstring says, until they hold
    at least `count` vertices or the connected component is used up. Ring 1 begins at `start`
    (a neighbour of the centre; its first neighbour when None)."""
    around = neighbours[centre]
    if not around:
        return []
    if start is None:
        start = around[0]
    if start not in around:
        raise AnimateMeError(f"spiral start {start} is not a neighbour of vertex {centre}")
    first = around.index(start)
    ring = around[first:] + around[:first]
    result = [ring]
    seen = {centre, *ring}
    inner = {centre}
    total = len(ring)
    while total < count:
        outer: list[int] = []
        for u in ring:
            cycle = neighbours[u]
            # Begin just after a neighbour one ring further in: what follows, counter-clockwise,
            # is first the rest of the spiral already walked, then the new vertices outside.
            begin = next(i for i, n in enumerate(cycle) if n in inner) + 1
            for n in cycle[begin:] + cycle[:begin]:
                if n not in seen:
                    seen.add(n)
                    outer.append(n)
        if not outer:
            break
        result.append(outer)
        total += len(outer)
        inner, ring = set(ring), outer
    return result


def _edge_weights(neighbours: list[list[int]], vertices: np.ndarray | None) -> list[list[float]]:
    if vertices is None:
        return [[1.0] * len(around) for around in neighbours]
    return [np.linalg.norm(vertices[around] - vertices[v], axis=1).tolist() if around else []
            for v, around in enumerate(neighbours)]


def _distances_to_references(neighbours: list[list[int]], weights: list[list[float]],
                             reference: int) -> np.ndarray:
    """Geodesic (shortest edge path) distance from every vertex to its component's reference."""
    distance = np.full(len(neighbours), np.inf)
    _dijkstra(neighbours, weights, reference, distance)
    for v in range(len(neighbours)):  # components the reference cannot reach
        if not np.isfinite(distance[v]):
            _dijkstra(neighbours, weights, v, distance)
    return distance


def _dijkstra(neighbours, weights, source: int, distance: np.ndarray) -> None:
    distance[source] = 0.0
    queue = [(0.0, source)]
    while queue:
        d, v = heapq.heappop(queue)
        if d > distance[v]:
            continue
        for n, w in zip(neighbours[v], weights[v]):
            if d + w < distance[n]:
                distance[n] = d + w
                heapq.heappush(queue, (d + w, n))


def _first_step(v: int, neighbours, weights, distance: np.ndarray) -> int | None:
    """The neighbour through which v's shortest path to its reference leaves v."""
    around = neighbours[v]
    if not around:
        return None
    if distance[v] == 0.0:  # v is the reference
        return min(around)
    through = np.asarray(weights[v]) + distance[around]
    best = through.min()
    ties = [n for n, d in zip(around, through) if d <= best + 1e-9 * max(1.0, best)]
    return min(ties)
