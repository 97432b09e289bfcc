"""Real-data loaders (CoMA and generic layouts) on tiny sequences the tests write."""

import numpy as np
import pytest

from animateme.cli import main
from animateme.realdata import (assemble_corpus, load_coma, load_generic, phase_progression, read_mapping,
                                split_subjects, write_corpus)
from animateme_blender.core.errors import AnimateMeError
from animateme.meshio import write_obj, write_ply
from animateme_blender.core.template import Template
from mesh_fixtures import grid_faces


def face_mesh(n=6):
    """A small bumpy grid standing in for a face: +Z forward, the bump's top the nose tip."""
    xs, ys = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.05, 0.05, n), indexing="xy")
    z = 0.02 * np.exp(-((xs - 0.01) ** 2 + (ys - 0.01) ** 2) / 0.0005)  # peak at vertex 21
    vertices = np.stack([xs.ravel(), ys.ravel(), z.ravel()], axis=1)
    return vertices, grid_faces(n)


VERTICES, FACES = face_mesh()
LOWER = VERTICES[:, 1] < 0  # the "mouth" half moves


def frames_for(curve, amplitude, subject_offset=0.0):
    """(N, V, 3) frames: the lower half drops by amplitude * curve (metres)."""
    base = VERTICES + subject_offset
    frames = np.repeat(base[None], len(curve), axis=0)
    frames[:, LOWER, 1] -= amplitude * np.asarray(curve)[:, None]
    return frames


def rise_fall(count):
    t = np.linspace(0, 1, count)
    return np.clip(np.minimum(3 * t, 3 * (1 - t)) - 0.2, 0, 1)


def write_sequence(folder, frames, suffix=".ply", name=None):
    folder.mkdir(parents=True, exist_ok=True)
    name = name or folder.name
    for k, frame in enumerate(frames, start=1):
        path = folder / f"{name}.{k:06d}{suffix}"
        (write_ply if suffix == ".ply" else write_obj)(path, frame, FACES)


def coma_tree(root, subjects=("FaceTalk_A", "FaceTalk_B", "FaceTalk_C", "FaceTalk_D")):
    for s, subject in enumerate(subjects):
        write_sequence(root / subject / "high_smile", frames_for(rise_fall(9), 0.004 * (1 + s), 0.001 * s))
        write_sequence(root / subject / "mouth_open", frames_for(rise_fall(55), 0.006, 0.001 * s))
        write_sequence(root / subject / "eyebrow", frames_for(rise_fall(5), 0.002, 0.001 * s))
    mapping = root.parent / "mapping.csv"
    mapping.write_text("expression,label\n# CoMA folder -> emotion\nhigh_smile,happy\nmouth_open,surprise\neyebrow,skip\n")
    return mapping


@pytest.fixture
def coma(tmp_path):
    root = tmp_path / "coma"
    mapping = coma_tree(root)
    return root, mapping


def test_coma_import_writes_the_corpus_contract(coma, tmp_path):
    root, mapping = coma
    data = load_coma(root, mapping)
    assert len(data.sequences) == 8  # eyebrow skipped
    corpus = assemble_corpus(data, test_fraction=0.25, seed=1, spiral_length=9)
    files = write_corpus(tmp_path / "out", corpus)
    assert sorted(f.name for f in files) == ["template.npz", "test.npz", "train.npz"]
    assert not list((tmp_path / "out").glob(".*"))

    template = Template.load(tmp_path / "out" / "template.npz")
    assert template.vertices.shape == (36, 3) and template.spirals.shape == (36, 9)
    assert np.array_equal(template.faces, FACES)
    assert template.spirals[:, 0].tolist() == list(range(36))
    assert corpus["template"]["reference_vertex"] == 21 == np.argmax(VERTICES[:, 2])

    splits = {name: dict(np.load(tmp_path / "out" / f"{name}.npz")) for name in ("train", "test")}
    train, test = splits["train"], splits["test"]
    assert set(train["subject"]).isdisjoint(test["subject"])
    assert len(np.unique(test["subject"])) == 1 and len(np.unique(train["subject"])) == 3
    for arrays in (train, test):
        count = len(arrays["label"])
        assert arrays["deform"].shape == (count, 40, 36, 3) and arrays["deform"].dtype == np.float32
        assert arrays["neutral"].shape == (count, 36, 3)
        assert np.all(arrays["deform"][:, 0] == 0)  # neutral = first frame
        assert arrays["progression"].shape == (count, 40)
        assert np.all(arrays["progression"] >= 0)
        assert np.all(arrays["progression"] <= arrays["extremeness"][:, None] + 1e-6)
        assert list(arrays["label_names"]) == ["happy", "sad", "surprise", "fear", "angry", "disgust"]
        assert set(arrays["label"]) == {0, 2}
        assert str(arrays["fingerprint"]) == template.fingerprint
        # metres -> millimetres: the mouth drops by millimetres, the neutral is the first frame
        names = [str(n) for n in arrays["subject_names"][arrays["subject"]]]
        offsets = np.array([{"A": 0, "B": 1, "C": 2, "D": 3}[n[-1]] for n in names])
        assert np.allclose(arrays["neutral"], (VERTICES[None] + 0.001 * offsets[:, None, None]) * 1000, atol=1e-3)
        assert 1.0 < np.abs(arrays["deform"]).max() <= 16.0 + 1e-3  # at most 4 mm x 4 (subject D)
    # Extremeness: within the training split the widest smile sets the scale; short sequences
    # keep every raw frame, so their apex (progression 1 before scaling) survives.
    happy = train["label"] == 0
    assert train["extremeness"][happy].max() == pytest.approx(1.0)
    reach = np.abs(train["deform"][happy]).max(axis=(1, 2, 3))
    assert np.allclose(train["extremeness"][happy], reach / reach.max(), atol=1e-4)
    assert np.allclose(train["progression"][happy].max(axis=1), train["extremeness"][happy], atol=1e-5)


def test_progression_follows_the_displacement_curve(tmp_path):
    root = tmp_path / "seq"
    curve = np.r_[np.linspace(0, 1, 20), np.linspace(1, 0, 20)]  # 40 frames: kept as they are
    for subject in ("s1", "s2"):
        write_sequence(root / f"{subject}_smile", frames_for(curve, 5.0), suffix=".obj")
    (root / "labels.csv").write_text("sequence,subject,label\ns1_smile,s1,happy\ns2_smile,s2,Happy\n")
    data = load_generic(root)
    assert [s.label for s in data.sequences] == ["happy", "happy"]
    assert np.allclose(data.sequences[0].progression, curve, atol=1e-5)
    assert data.sequences[0].apex_displacement == pytest.approx(5.0 * LOWER.mean())


def test_generic_phase_annotations_set_the_progression(tmp_path):
    root = tmp_path / "seq"
    for subject in ("a", "b", "c"):
        write_sequence(root / f"{subject}-1", frames_for(rise_fall(40), 3.0), suffix=".obj", name="frame")
    (root / "labels.csv").write_text("sequence,subject,label,onset,apex,offset,end\n"
                                     "a-1,a,sad,5,10,25,30\nb-1,b,fear,,,,\nc-1,c,sad,0,0,39,39\n")
    data = load_generic(root)
    expected = np.r_[np.zeros(5), np.linspace(0, 1, 6), np.ones(15), np.linspace(1, 0, 6)[1:], np.zeros(9)]
    assert np.allclose(data.sequences[0].progression, expected, atol=1e-6)
    assert np.allclose(data.sequences[1].progression, rise_fall(40) / rise_fall(40).max(), atol=1e-5)
    assert np.allclose(data.sequences[2].progression[:-1], 1.0)
    assert np.allclose(phase_progression(5, 1, 3, 3, 4), [0, 0, 0.5, 1, 0])


def test_split_is_subject_disjoint_and_seeded():
    subjects = [f"s{i}" for i in range(20)]
    train, test = split_subjects(subjects * 3, 0.2, seed=7)
    assert len(test) == 4 and len(train) == 16 and not set(train) & set(test)
    assert split_subjects(subjects, 0.2, seed=7) == (train, test)
    assert any(split_subjects(subjects, 0.2, seed=s)[1] != test for s in range(5))
    with pytest.raises(AnimateMeError, match="at least 2"):
        split_subjects(["only"], 0.2)
    with pytest.raises(AnimateMeError, match="strictly between"):
        split_subjects(subjects, 1.0)


def test_mapping_from_dict_and_csv(tmp_path):
    assert read_mapping({"high_smile": "Happy", "eyebrow": None}) == {"high_smile": "happy", "eyebrow": None}
    path = tmp_path / "map.csv"
    path.write_text("high_smile,happy\nmouth_open,skip\n")
    assert read_mapping(path) == {"high_smile": "happy", "mouth_open": None}
    for text, message in (("high_smile,joy\n", "unknown label 'joy'"), ("high_smile\n", "expression,label"),
                          ("a,happy\na,sad\n", "mapped twice"), ("a,skip\n", "labels nothing")):
        path.write_text(text)
        with pytest.raises(AnimateMeError, match=message):
            read_mapping(path)


def bad(call, *where):
    with pytest.raises(AnimateMeError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for part in where:
        assert str(part) in message, message
    return message


def test_bad_coma_inputs_name_the_file(coma, tmp_path):
    root, mapping = coma
    frame = root / "FaceTalk_B" / "mouth_open" / "mouth_open.000007.ply"
    # A frame with a different vertex count (ragged frames).
    write_ply(frame, VERTICES[:30], FACES[FACES.max(axis=1) < 30])
    assert "vertices" in bad(lambda: load_coma(root, mapping), frame)
    # Same vertex count but another topology.
    write_ply(frame, VERTICES, FACES[:, ::-1])
    assert "topology" in bad(lambda: load_coma(root, mapping), frame)
    write_ply(frame, VERTICES, FACES)
    # A file that claims to be a mesh but is not.
    frame.write_bytes(b"\x89PNG\r\n\x1a\n not a mesh")
    assert "not a PLY" in bad(lambda: load_coma(root, mapping), frame)
    write_ply(frame, VERTICES, FACES)
    # Something that is not a mesh frame at all.
    notes = root / "FaceTalk_C" / "high_smile" / "notes.txt"
    notes.write_text("recorded on Tuesday")
    assert "not a mesh frame" in bad(lambda: load_coma(root, mapping), notes)
    notes.unlink()
    # A sequence of one frame.
    lone = root / "FaceTalk_D" / "high_smile"
    for extra in sorted(lone.iterdir())[1:]:
        extra.unlink()
    assert "at least 2" in bad(lambda: load_coma(root, mapping), lone)


def test_bad_mapping_and_layout(coma, tmp_path):
    root, mapping = coma
    (root / "FaceTalk_A" / "lips_up").mkdir()
    assert "not in the mapping" in bad(lambda: load_coma(root, mapping), root / "FaceTalk_A" / "lips_up")
    assert "unknown label" in bad(lambda: load_coma(root, {"high_smile": "smiley"}))
    assert "not a folder" in bad(lambda: load_coma(tmp_path / "nowhere", mapping), tmp_path / "nowhere")
    assert "does not exist" in bad(lambda: load_coma(root, tmp_path / "nomap.csv"), tmp_path / "nomap.csv")
    assert "no mapped" in bad(lambda: load_coma(tmp_path / "coma" / "FaceTalk_A" / "high_smile", mapping))


def test_bad_generic_inputs_name_the_file(tmp_path):
    root = tmp_path / "seq"
    for name in ("x1", "y1"):
        write_sequence(root / name, frames_for(rise_fall(6), 2.0))
    labels = root / "labels.csv"
    assert "does not exist" in bad(lambda: load_generic(root), labels)
    labels.write_text("sequence,label\nx1,happy\n")
    assert "subject" in bad(lambda: load_generic(root), labels)
    labels.write_text("sequence,subject,label\nx1,x,happy\ny1,y,bored\n")
    assert "unknown label 'bored'" in bad(lambda: load_generic(root), f"{labels}:3")
    labels.write_text("sequence,subject,label\nx1,x,happy\n")
    assert "has no row" in bad(lambda: load_generic(root), root / "y1", labels)
    labels.write_text("sequence,subject,label\nx1,x,happy\ny1,y,sad\nz1,z,sad\n")
    assert "does not exist" in bad(lambda: load_generic(root), root / "z1")
    labels.write_text("sequence,subject,label,onset,apex,offset,end\nx1,x,happy,0,9,9,9\ny1,y,sad\n")
    assert "onset <= apex" in bad(lambda: load_generic(root), root / "x1")
    labels.write_text("sequence,subject,label\nx1,x,happy\ny1,y,sad\n")
    still = root / "y1"
    for path in still.iterdir():
        write_ply(path, VERTICES, FACES)
    assert "no frame moves" in bad(lambda: load_generic(root), still)


def test_failed_write_leaves_nothing_that_looks_complete(coma, tmp_path):
    root, mapping = coma
    corpus = assemble_corpus(load_coma(root, mapping), seed=0)
    out = tmp_path / "out"
    (out / ".train.npz.partial").mkdir(parents=True)  # writing train will fail
    bad(lambda: write_corpus(out, corpus), out)
    assert sorted(p.name for p in out.iterdir()) == [".train.npz.partial"]


def test_cli_imports_and_reports_errors(coma, tmp_path, capsys):
    root, mapping = coma
    out = tmp_path / "corpus"
    assert main(["import", "coma", str(root), "--mapping", str(mapping), "--out", str(out),
                 "--spiral-length", "7", "--test-fraction", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert '"sequences"' in printed and "template.npz" in printed
    assert np.load(out / "template.npz")["spirals"].shape == (36, 7)
    assert len(np.unique(np.load(out / "test.npz")["subject"])) == 2

    generic = tmp_path / "generic"
    for name in ("p", "q"):
        write_sequence(generic / name, frames_for(rise_fall(6), 2.0), suffix=".obj")
    (generic / "labels.csv").write_text("sequence,subject,label\np,p,angry\nq,q,angry\n")
    assert main(["import", "generic", str(generic), "--out", str(tmp_path / "g")]) == 0
    assert np.load(tmp_path / "g" / "train.npz")["deform"].shape == (1, 40, 36, 3)

    # A label only the held-out subjects play has no training scale: refused, saying what to do.
    (generic / "labels.csv").write_text("sequence,subject,label\np,p,angry\nq,q,disgust\n")
    capsys.readouterr()
    assert main(["import", "generic", str(generic), "--out", str(tmp_path / "g2")]) == 2
    assert "training split" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["import", "generic", str(tmp_path / "missing"), "--out", str(tmp_path / "h")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("animateme: error:") and "missing" in error and "\n" not in error
