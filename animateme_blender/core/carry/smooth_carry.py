"""Carry template motion onto the user's vertices smoothly: the rig's shapes and every generated frame.

The binding (transfer.py) moves each user vertex with its template triangle's corners, linearly:
over a dense face the motion then bends along every template edge (7 mm apart), a web of creases
the user's resolution shows. Here a vertex's closest point on the template takes instead the
moving-least-squares value of the template's vertex motions around it: a linear fit in the bound
triangle's plane, weighted by (1 - (r / R_j)^2)^3 with R_j = `support` times the mean edge at
template vertex j. The weights are smooth and vanish at their edge, so the carried field is smooth
across template edges; the linear fit reproduces a motion that is affine along the surface exactly
(a translation anywhere, any affine motion on a flat patch); on a curved face it also blurs the
motion slightly, by its change along the normal times the curvature. (Carried this way and
linearly, the rig differs by 0.1-0.16 mm mean on MeshMonk's face at a label's apex, against 3-7 mm
of motion.) Only template vertices within two rings of the bound triangle take part: across a
closed mouth or closed lids the lips and lids lie a millimetre apart but far apart on the
template, which is open there, so each keeps its own motion. The offset of the vertex from its
closest point still turns with its triangle, as in the binding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..geometry import graph_laplacian, triangle_frames

SUPPORT = 2.0      # weight radius, in mean edge lengths at each template vertex
RINGS = 2          # template rings around the bound triangle's corners that may take part
CHUNK = 20_000     # user vertices per batch (memory stays bounded for any mesh)


def carry_matrix(binding, support: float = SUPPORT) -> sp.csr_matrix:
    """(N,V) weights: row u gives user vertex u's closest point as a combination of template
    vertices (rows sum to 1; a field affine along the surface is reproduced exactly)."""
    rest, faces = np.asarray(binding.rest, np.float64), np.asarray(binding.faces, np.int64)
    count = len(rest)
    radius = support * _mean_edge(rest, faces)
    neighbours = _triangle_neighbours(faces, count)                       # (F,K), -1 padded
    frames = triangle_frames(rest, faces)
    triangle = np.asarray(binding.triangle)
    points = np.einsum("nk,nkc->nc", binding.barycentric, rest[faces[triangle]])
    # A lip vertex never takes the other lip's motion (lips.py): those template vertices drop out.
    user_side = getattr(binding, "side", None)
    template_side = getattr(binding, "template_side", None)
    sided = user_side is not None and template_side is not None
    rows, columns, values = [], [], []
    for start in range(0, len(triangle), CHUNK):
        tri = triangle[start:start + CHUNK]
        near = neighbours[tri]                                            # (n,K)
        offset = rest[np.maximum(near, 0)] - points[start:start + CHUNK, None]
        reach = np.linalg.norm(offset, axis=-1) / radius[np.maximum(near, 0)]
        weight = np.where(near >= 0, np.clip(1.0 - reach ** 2, 0.0, None) ** 3, 0.0)
        if sided:
            own = np.asarray(user_side)[start:start + CHUNK, None]
            other = (own >= 0) & (np.asarray(template_side)[np.maximum(near, 0)] == (own ^ 1))
            weight = np.where(other, 0.0, weight)
        plane = np.einsum("nkc,nrc->nkr", offset, frames[tri][:, :2])  # in the triangle's plane
        basis = np.concatenate([np.ones(near.shape + (1,)), plane], axis=-1)       # (n,K,3)
        normal = np.einsum("nk,nka,nkb->nab", weight, basis, basis)
        normal += 1e-9 * np.einsum("nii->n", normal)[:, None, None] * np.eye(3)
        # The fit's value at the point: e1^T (B^T W B)^-1 B^T W, one row per user vertex.
        solved = np.linalg.solve(normal, np.broadcast_to([1.0, 0.0, 0.0], (len(tri), 3))[..., None])[..., 0]
        row = np.einsum("na,nka->nk", solved, basis) * weight
        fallback = (weight > 0).sum(1) < 3         # too few neighbours for a plane: the corners, linearly
        if fallback.any():
            row[fallback] = 0.0
        keep = row != 0.0
        users = np.broadcast_to(np.arange(start, start + len(tri))[:, None], near.shape)
        rows += [users[keep]]
        columns += [near[keep]]
        values += [row[keep]]
        if fallback.any():
            lost = np.flatnonzero(fallback) + start
            rows += [np.repeat(lost, 3)]
            columns += [faces[triangle[lost]].ravel()]
            values += [np.asarray(binding.barycentric)[lost].ravel()]
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                         shape=(len(triangle), count))


def carry(binding, shapes: np.ndarray, matrix: sp.csr_matrix | None = None) -> np.ndarray:
    """(S,V,3) template deformations (mm) -> (S,N,3) user displacements, as binding.apply but with
    the closest point's motion taken smoothly (carry_matrix); rigid parts move as the binding moves
    them (by their mean)."""
    shapes = np.asarray(shapes, dtype=np.float64)
    linear = np.asarray(binding.apply(shapes, mix=False), dtype=np.float64)
    matrix = carry_matrix(binding) if matrix is None else matrix
    corners = np.asarray(binding.faces)[binding.triangle]
    per_vertex = (np.asarray(binding.group) < 0) & (np.asarray(binding.weight) > 0)
    out = linear.copy()
    for s, shape in enumerate(shapes):
        smooth = matrix @ shape
        barycentric = np.einsum("nk,nkc->nc", binding.barycentric, shape[corners])
        change = (smooth - barycentric)[per_vertex] * binding.weight[per_vertex, None]
        out[s, per_vertex] += binding.scale * change @ np.asarray(binding.rotation).T
    return out


def carry_mixed(binding, shapes: np.ndarray, matrices: tuple) -> np.ndarray:
    """carry() of each vertex's own side, blended along uncut lip contacts with the other side's
    (transfer.Binding.mix). matrices: (own, alternate's or None)."""
    own = carry(binding, shapes, matrices[0])
    if getattr(binding, "alternate", None) is None:
        return own
    return binding.mix(own, carry(binding.alternate, shapes, matrices[1]))


@dataclass
class SmoothCarry:
    """A binding with its carry matrix, built on first use and kept: one per registered face.
    Given the user's mesh (vertices, triangles), what it carries never turns a triangle over
    (unfold.py relaxes the motion where one would)."""
    binding: object
    mesh: tuple | None = None
    _matrices: tuple | None = field(default=None, repr=False)
    _graph: object = field(default=None, repr=False)
    folds_left: int = 0     # triangles still turned over in the worst frame of the last unfold (0: none)

    @property
    def matrices(self) -> tuple:
        """The carry matrix of each vertex's own side, and of the other side for the mixed ones."""
        if self._matrices is None:
            alternate = getattr(self.binding, "alternate", None)
            self._matrices = (carry_matrix(self.binding), None if alternate is None else carry_matrix(alternate))
        return self._matrices

    @property
    def matrix(self) -> sp.csr_matrix:
        return self.matrices[0]

    def apply(self, shapes: np.ndarray, still: np.ndarray | None = None) -> np.ndarray:
        """(S,V,3) template deformations (mm) -> (S,N,3) user displacements (float32); vertices
        `still` (indices or mask) get exactly zero."""
        # A clip repeats frames (its apex hold, its neutral ends): each distinct one is carried
        # once, frame by frame the same work, so the result is the same (on 148k vertices the
        # carry and unfold of 40 frames took 3 s).
        shapes = np.asarray(shapes)
        distinct, inverse = np.unique(shapes.reshape(len(shapes), -1), axis=0, return_inverse=True)
        return self._apply(distinct.reshape((-1,) + shapes.shape[1:]), still)[np.asarray(inverse).reshape(-1)]

    def _apply(self, shapes: np.ndarray, still) -> np.ndarray:
        out = np.asarray(carry_mixed(self.binding, shapes, self.matrices), dtype=np.float32)
        keep = np.zeros(out.shape[1], dtype=bool)
        if still is not None:
            keep[still] = True
            out[:, keep] = 0.0
        if self.mesh is None:
            return out
        from .unfold import even_band

        mixed = getattr(self.binding, "mixed", None)
        if mixed is not None and len(mixed):
            band = np.zeros(len(keep), dtype=bool)
            band[mixed[self.binding.blend > 0]] = True
            out = even_band(self.mesh[0], self.mesh[1], out, band & self.movable(keep), self.graph)
        return self.unfold(out, keep)

    @property
    def graph(self):
        """The user's mesh's edge graph for unfold.py, built once."""
        if self._graph is None:
            from .unfold import adjacency

            self._graph = adjacency(self.mesh[0], self.mesh[1])
        return self._graph

    def movable(self, still: np.ndarray | None = None) -> np.ndarray:
        """(N,) the vertices whose motion may be relaxed: rigid parts and what the artist keeps
        still stay so; the skin beyond the binding's fade may give way where a triangle beside
        it would fold (inside the mouth socket)."""
        movable = np.asarray(self.binding.group) < 0
        return movable if still is None else movable & ~np.asarray(still, dtype=bool)

    def unfold(self, shapes: np.ndarray, still: np.ndarray | None = None,
               probes: np.ndarray | None = None) -> np.ndarray:
        """`shapes` (S,N,3) on the user's mesh relaxed where a triangle would turn over (unfold.py);
        `probes` (P,N,3), combinations of the shapes, are looked at too (the relaxation is linear:
        the same combination of the relaxed shapes is the relaxed combination)."""
        from .unfold import unfold

        if self.mesh is None:
            return shapes
        frames = shapes if probes is None else np.concatenate([shapes, np.asarray(probes, shapes.dtype)])
        # With probes, the folds that count are the clip's: a shape at full weight may fold inside
        # the mouth socket as the face model's own shape does (jawOpen at 1), which no clip plays.
        watch = None if probes is None else np.arange(len(shapes), len(frames))
        result = unfold(self.mesh[0], self.mesh[1], frames, self.movable(still), self.graph, watch=watch)
        self.folds_left = result.folded_after
        return np.asarray(result.displacements[:len(shapes)], dtype=shapes.dtype)


def _mean_edge(rest: np.ndarray, faces: np.ndarray) -> np.ndarray:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    length = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    total = np.bincount(edges[:, 0], length, len(rest)) + np.bincount(edges[:, 1], length, len(rest))
    uses = np.bincount(edges[:, 0], minlength=len(rest)) + np.bincount(edges[:, 1], minlength=len(rest))
    return np.where(uses > 0, total / np.maximum(uses, 1), 1.0)


def _triangle_neighbours(faces: np.ndarray, count: int) -> np.ndarray:
    """(F,K) the template vertices within RINGS rings of each triangle's corners, -1 padded."""
    step = abs(graph_laplacian(faces, count))          # one ring and the vertex itself: its non-zeros
    reach = step
    for _ in range(RINGS - 1):
        reach = reach @ step
    corners = sp.coo_matrix((np.ones(faces.size), (np.repeat(np.arange(len(faces)), 3), faces.ravel())),
                            shape=(len(faces), count))
    near = (corners @ reach).tocsr()
    sizes = np.diff(near.indptr)
    table = np.full((len(faces), max(int(sizes.max(initial=0)), 1)), -1, dtype=np.int64)
    slot = np.arange(near.nnz) - np.repeat(near.indptr[:-1], sizes)
    table[np.repeat(np.arange(len(faces)), sizes), slot] = near.indices
    return table
