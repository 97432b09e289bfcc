"""The jaw of a generated frame, and the parts inside the mouth and the eyes that move rigidly.

The template is skin only, but the face model it comes from has teeth: each expression shape moves
the lower teeth by a rigid motion (`Template.jaw_twist`, fitted at build time). A generated frame
is read as a mix of the expression shapes (ridge least squares on the template's shapes) and its
jaw is that mix of their motions: one rotation and translation a frame, which the user's lower
teeth, lower gums and tongue follow exactly. Upper teeth and gums stay with the head; eyeballs
stay still; shells on the skin (lashes, brows) follow the skin under them (transfer.py).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import dijkstra

from .lips import edge_graph

RIDGE = 1e-6        # relative to the shapes' mean energy: keeps the solve defined where shapes nearly repeat
SHELL_MM = 4.0      # a separate part whose median depth under the template is below this is a shell
UNDER_MM = 1.0      # ... and whose middle lies less than this under the skin
NEAR, FAR = 1.5, 2.5  # a part of an opening: its middle within NEAR opening widths, all of it within FAR
ROW_MM = 4.0        # a tooth whose middle lies below the lips' contact + this is a lower tooth
SPLIT_MM = 5.0      # one piece holding both jaws: seeds this far above / below the lips' contact
TOOTH = 0.5         # a piece narrower than this many mouth widths (across and in depth) is one tooth

STILL, JAW, SHELL = 0, 1, 2


def jaw_map(template) -> np.ndarray | None:
    """(6, 3V) linear map from a template deformation (V,3 mm, flattened) to the jaw's motion
    (rotation vector, translation); None for a template built without the jaw's motions."""
    twist = getattr(template, "jaw_twist", None)
    if twist is None:
        return None
    shapes = np.asarray(template.expression_modes, np.float64).reshape(len(twist), -1)   # (E,3V)
    gram = shapes @ shapes.T
    gram += RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.asarray(twist, np.float64).T @ np.linalg.solve(gram, shapes)


def _cross_matrix(v: np.ndarray) -> np.ndarray:
    """[v]x: the matrix with [v]x @ u = v x u."""
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def rotation(vector: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation matrix of a rotation vector (radians)."""
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    cross = _cross_matrix(np.asarray(vector, np.float64) / angle)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rigid_motion(twist: np.ndarray, points: np.ndarray, centre: np.ndarray,
                 anchor: np.ndarray | None = None) -> np.ndarray:
    """(n,3) displacements of `points` by the jaw's motion: rotation by twist[:3] about `centre`,
    which itself moves as the linear field w x c + v says at `anchor` (default: the centre);
    exactly rigid at any size."""
    w, v = np.asarray(twist[:3], np.float64), np.asarray(twist[3:], np.float64)
    anchor = centre if anchor is None else anchor
    moved_centre = centre + np.cross(w, anchor) + v
    return (points - centre) @ rotation(w).T + moved_centre - points


def jaw_pivot(local: np.ndarray, jaw: np.ndarray, group: np.ndarray, fit, template, to_jaw: np.ndarray | None):
    """(centre, anchor), template frame mm: the jaw's parts turn about the middle of the pieces
    that follow it wholly (the lower teeth; not a piece shared with the upper jaw, whose middle
    the template's teeth say nothing of), and that middle moves as the template's teeth would move where
    these teeth sit on the template: the expression shapes move every face's teeth alike, as the
    skin around them is carried. So the fit's own mouth opening and the identity's shift of the
    teeth are taken off before the jaw's field is read (0.57 -> 0.46 mm on a face-model head)."""
    whole = np.zeros(len(jaw), bool)
    for g in np.unique(group[jaw >= 1.0]):
        members = group == g
        whole |= members & (jaw[members].min() >= 1.0)
    moving = whole if whole.any() else jaw > 0
    if not moving.any():
        return np.zeros(3), np.zeros(3)
    centre = local[moving].mean(axis=0)
    anchor = centre.copy()
    shift = getattr(template, "jaw_identity", None)
    identity = np.asarray(getattr(fit, "identity", np.zeros(0)), np.float64)
    if shift is not None and len(identity) == len(shift):
        anchor -= identity @ np.asarray(shift, np.float64)
    expression = np.asarray(getattr(fit, "expression", np.zeros((0, 3))), np.float64)
    if to_jaw is not None and expression.size == to_jaw.shape[1]:
        # The neutral's own open jaw moved the teeth by w x X + v from X: solve for X.
        w, v = np.split(to_jaw @ expression.reshape(-1), 2)
        anchor = np.linalg.solve(np.eye(3) + _cross_matrix(w), anchor - v)
    return centre, anchor


def classify_parts(local: np.ndarray, group: np.ndarray, offset: np.ndarray, rest: np.ndarray, sides,
                   faces: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(kind, jaw) of each vertex of a separate part (group >= 0): kind STILL / JAW / SHELL, and the
    share of the jaw's motion it takes (1 for lower teeth, 0 for upper teeth and eyeballs, between
    for one piece holding both jaws, by its own surface: nearer the lower seeds along it, more).
    `local` the vertices in the template frame, `offset` their offsets from the template in its
    triangles' frames (mm; the third axis along the outward normal).

    A shell lies on the skin (lashes, brows): near it and not under it. Everything else is inside:
    the piece nearest the mouth opening is of the mouth (teeth, gums, tongue), the others eyes."""
    kind = np.full(len(local), SHELL, dtype=np.int64)
    jaw = np.zeros(len(local))
    if not sides.openings:
        return kind, jaw
    centres = np.array([rest[o.loop].mean(axis=0) for o in sides.openings])
    mouth = int(np.argmin(centres[:, 1]))                 # the lowest opening (y up)
    contact = centres[mouth, 1]
    graph = None
    for g in np.unique(group[group >= 0]):
        members = np.flatnonzero(group == g)
        depth = np.linalg.norm(offset[members], axis=1)
        if np.median(depth) < SHELL_MM and np.median(offset[members, 2]) > -UNDER_MM:
            continue                                     # a shell: follows the skin
        centroid = local[members].mean(axis=0)
        nearest = int(np.argmin(np.linalg.norm(centres - centroid, axis=1)))
        width = sides.openings[nearest].width
        reach = np.linalg.norm(local[members] - centres[nearest], axis=1)
        if np.linalg.norm(centroid - centres[nearest]) > NEAR * width or reach.max() > FAR * width:
            continue                                     # not of the mouth or an eye (a body): as before
        if nearest != mouth:
            kind[members] = STILL                        # an eyeball
            continue
        height = local[members, 1]
        kind[members] = JAW
        footprint = max(np.ptp(local[members, 0]), np.ptp(local[members, 2]))
        straddles = (height < contact - SPLIT_MM).any() and (height > contact + SPLIT_MM).any()
        if not straddles or footprint < TOOTH * sides.openings[mouth].width:
            # One jaw's piece (a tooth, roots and all, however tall): rigid, whole. The teeth rows
            # meet a little above the lips' contact at the back (the bite rises towards the
            # molars): lower crowns' middles lie below contact + ROW_MM, upper ones well above it.
            jaw[members] = float(centroid[1] < contact + ROW_MM)
            continue
        if graph is None and faces is not None and len(faces):
            graph = edge_graph(local, faces)
        jaw[members] = _split_share(graph, members, height, contact)
    return kind, jaw


def _split_share(graph, members: np.ndarray, height: np.ndarray, contact: float) -> np.ndarray:
    """A piece holding both jaws (gums and tongue as one mesh): 1 near its parts well below the
    contact, 0 near those well above, by distance along its own surface between."""
    low, high = members[height < contact - SPLIT_MM], members[height > contact + SPLIT_MM]
    if graph is None or len(low) == 0 or len(high) == 0:
        return (height < contact).astype(np.float64)
    to_low = dijkstra(graph, indices=low, min_only=True)[members]
    to_high = dijkstra(graph, indices=high, min_only=True)[members]
    total = to_low + to_high
    return np.where(np.isfinite(total) & (total > 0), to_high / np.where(total > 0, total, 1.0),
                    (height < contact).astype(np.float64))
