"""Which side of the mouth (and of each eye) a vertex belongs to, on the template and on the user's mesh.

The template is open at the mouth and the eyes: each opening is a loop of boundary vertices whose
two corners (its extreme left and right) split it into an upper and a lower arc. Around an
opening every template vertex belongs to the side whose arc is nearer along the surface; a path
from one lip to the other has to go round a corner, so the two sides never touch on the template.

The user's lips do touch: at a closed mouth the upper lip's last row lies a millimetre from the
lower lip's first, and by distance alone a lip vertex can bind to either lip's template triangles:
along the contact they alternate, and the lip line tears into spikes. So the side of a user vertex
is decided in two steps: where one side's template surface is clearly nearer (by `MARGIN_MM`), by
distance; along the contact, by the user's own surface, the side of the nearest decided vertex
along the mesh. A mesh with a mouth opening then keeps each lip whole (the other lip is round the
corner); a mesh whose lips are one surface is split along the middle of the contact band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ..geometry import closest_on_mesh, edge_use, incident_triangles

MARGIN_MM = 3.0     # a user vertex this much nearer one side's template surface is decided by distance
TIE_MM = 0.0        # template vertices exactly as near both arcs belong to both sides (only the corners, in practice)
BAND_MM = 6.0       # along the contact, the other side's share falls from 1/2 to 0 over this lead
ZONE = 0.8          # the sides reach this many opening widths from the arcs
NONE = -1           # no side: far from every opening, or beside a corner


@dataclass(frozen=True)
class Opening:
    loop: np.ndarray          # template vertices of the boundary loop, in order
    upper: np.ndarray         # the upper arc (corners excluded)
    lower: np.ndarray         # the lower arc (corners excluded)
    corners: tuple[int, int]  # left and right template vertices
    width: float              # corner to corner, mm


@dataclass(frozen=True)
class Sides:
    """Side codes: opening o's upper side is 2*o, its lower side 2*o + 1; NONE elsewhere."""
    openings: tuple[Opening, ...]
    template: np.ndarray      # (V,) code of each template vertex

    @staticmethod
    def opposite(code: np.ndarray) -> np.ndarray:
        code = np.asarray(code)
        return np.where(code >= 0, code ^ 1, NONE)

    def allowed_faces(self, faces: np.ndarray, code: int) -> np.ndarray:
        """(F,) bool: triangles with no corner on the other side of `code`'s opening."""
        return ~(self.template[faces] == (code ^ 1)).any(axis=1)


def boundary_loops(faces: np.ndarray, count: int) -> list[np.ndarray]:
    """Every closed loop of open-border edges, as an ordered vertex list (manifold borders)."""
    key, uses = edge_use(np.asarray(faces, np.int64), count)
    single = key[uses == 1]
    a, b = single // count, single % count
    graph = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(count, count)).tocsr()
    graph = (graph + graph.T).tocsr()
    seen = np.zeros(count, dtype=bool)
    loops = []
    for start in np.unique(np.concatenate([a, b])):
        if seen[start]:
            continue
        loop, previous, current = [start], -1, start
        seen[start] = True
        while True:
            nxt = [n for n in graph.indices[graph.indptr[current]:graph.indptr[current + 1]] if n != previous]
            if not nxt or nxt[0] == start or seen[nxt[0]]:
                break
            previous, current = current, int(nxt[0])
            seen[current] = True
            loop.append(current)
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def find_openings(vertices: np.ndarray, faces: np.ndarray) -> tuple[Opening, ...]:
    """The template's inner boundary loops (the mouth and the eyes), split at their corners. The
    outer border (the longest loop) is not an opening. Axes: x left-right, y up (the template's)."""
    vertices = np.asarray(vertices, np.float64)
    loops = boundary_loops(faces, len(vertices))
    if len(loops) < 2:
        return ()
    lengths = [np.linalg.norm(vertices[l] - vertices[np.roll(l, 1)], axis=1).sum() for l in loops]
    outer = int(np.argmax(lengths))
    openings = []
    for i, loop in enumerate(loops):
        if i == outer or len(loop) < 4:
            continue
        x = vertices[loop, 0]
        left, right = int(np.argmin(x)), int(np.argmax(x))
        lo, hi = sorted((left, right))
        arc_a, arc_b = loop[lo + 1:hi], np.concatenate([loop[hi + 1:], loop[:lo]])
        if len(arc_a) == 0 or len(arc_b) == 0:
            continue
        upper, lower = (arc_a, arc_b) if vertices[arc_a, 1].mean() > vertices[arc_b, 1].mean() else (arc_b, arc_a)
        width = float(np.linalg.norm(vertices[loop[left]] - vertices[loop[right]]))
        openings.append(Opening(loop=loop, upper=upper, lower=lower, corners=(int(loop[left]), int(loop[right])),
                                width=width))
    return tuple(openings)


def edge_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """(V,V) symmetric graph of the mesh's edges weighted by their length."""
    faces = np.asarray(faces, np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    length = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    length = np.maximum(length, 1e-9)     # csgraph reads an explicit zero as no edge
    graph = sp.coo_matrix((length, (edges[:, 0], edges[:, 1])), shape=(len(vertices),) * 2).tocsr()
    graph = graph.maximum(graph.T)
    return graph.tocsr()


def template_sides(vertices: np.ndarray, faces: np.ndarray) -> Sides:
    """Each template vertex's side code: the nearer arc along the surface, within ZONE opening
    widths of it; NONE far away and where both arcs are about as near (beside the corners)."""
    vertices = np.asarray(vertices, np.float64)
    openings = find_openings(vertices, faces)
    code = np.full(len(vertices), NONE, dtype=np.int64)
    if not openings:
        return Sides(openings=(), template=code)
    graph = edge_graph(vertices, faces)
    best = np.full(len(vertices), np.inf)
    for o, opening in enumerate(openings):
        reach = ZONE * opening.width
        up = dijkstra(graph, indices=opening.upper, min_only=True, limit=2 * reach)
        low = dijkstra(graph, indices=opening.lower, min_only=True, limit=2 * reach)
        near = np.minimum(up, low)
        apart = np.abs(np.where(np.isfinite(up), up, 1e9) - np.where(np.isfinite(low), low, 1e9))
        inside = (near <= reach) & (near < best) & (apart > TIE_MM)
        code[inside] = np.where(up[inside] < low[inside], 2 * o, 2 * o + 1)
        best = np.where(inside, near, best)
        code[list(opening.corners)] = NONE
    return Sides(openings=openings, template=code)


def closest_allowed(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, allowed: np.ndarray,
                    neighbours: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """closest_on_mesh over the `allowed` triangles only: (triangle index into `faces`,
    barycentric, closest point)."""
    keep = np.flatnonzero(allowed)
    sub = np.asarray(faces)[keep]
    used = np.unique(sub)
    local = np.full(len(vertices), -1, dtype=np.int64)
    local[used] = np.arange(len(used))
    sub_local = local[sub]
    found, bary, closest = closest_on_mesh(points, vertices[used], sub_local, cKDTree(vertices[used]),
                                           incident_triangles(sub_local, len(used)), neighbours)
    return keep[found], bary, closest


def user_sides(sides: Sides, rest: np.ndarray, template_faces: np.ndarray, local: np.ndarray,
               user_faces: np.ndarray | None, margin: float = MARGIN_MM,
               band: float = BAND_MM) -> tuple[np.ndarray, np.ndarray]:
    """(code, blend) of each user vertex (`local`: its position in the template frame, mm) given
    the fitted template `rest`: its side code (NONE where its closest template surface belongs to
    no side) and how much of the other side's motion it takes, in [0, 0.5].

    Decided by distance where one side's surface is nearer by `margin` (blend 0). Along the
    contact, by the user's own surface: the side of the nearer decided vertex along its edges, and
    a blend that rises to 0.5 where both sides are equally far, over `band` mm of difference. A
    mouth opening in the user's mesh puts the other side round the corner, so a lip there takes
    nothing of the other (a discontinuity only where the mesh itself is cut); where the lips are
    one surface, or meet at a corner, the motion passes from one side to the other evenly."""
    code = np.full(len(local), NONE, dtype=np.int64)
    blend = np.zeros(len(local))
    if not sides.openings:
        return code, blend
    rest = np.asarray(rest, np.float64)
    template_faces = np.asarray(template_faces, np.int64)
    graph = None
    for o, opening in enumerate(sides.openings):
        centre = rest[opening.loop].mean(axis=0)
        near = np.flatnonzero(np.linalg.norm(local - centre, axis=1) <= (ZONE + 1.0) * opening.width)
        if len(near) == 0:
            continue
        points = local[near]
        distance = []
        for side in (2 * o, 2 * o + 1):
            _, _, closest = closest_allowed(points, rest, template_faces, sides.allowed_faces(template_faces, side))
            distance.append(np.linalg.norm(points - closest, axis=1))
        gap = distance[1] - distance[0]                 # > 0: the upper side is nearer
        zoned = np.abs(gap) > 1e-6                      # the two sides' nearest surfaces differ
        decided = zoned & (np.abs(gap) >= margin)
        code[near[decided]] = np.where(gap[decided] > 0, 2 * o, 2 * o + 1)
        contact = near[zoned & ~decided]
        if len(contact) == 0:
            continue
        by_distance = np.where(gap[zoned & ~decided] > 0, 2 * o, 2 * o + 1)
        if user_faces is None or len(user_faces) == 0:
            code[contact] = by_distance
            continue
        if graph is None:
            graph = edge_graph(local, user_faces)
        reach = ZONE * opening.width
        along = []
        for side in (2 * o, 2 * o + 1):
            seeds = near[code[near] == side]
            along.append(dijkstra(graph, indices=seeds, min_only=True, limit=reach)[contact]
                         if len(seeds) else np.full(len(contact), np.inf))
        reached = np.isfinite(np.minimum(*along))
        code[contact] = np.where(reached, np.where(along[0] < along[1], 2 * o, 2 * o + 1), by_distance)
        finite = np.isfinite(along[0]) & np.isfinite(along[1])
        lead = np.full(len(contact), np.inf)
        lead[finite] = np.abs(along[0][finite] - along[1][finite])
        blend[contact] = np.where(reached, 0.5 * smoothstep_down(lead / band), 0.0)
    return code, blend


def smoothstep_down(x: np.ndarray) -> np.ndarray:
    """1 at 0, 0 from 1, C1-smooth between."""
    x = np.clip(x, 0.0, 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)
