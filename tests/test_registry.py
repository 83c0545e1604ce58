"""kd.registry's weights fingerprint: the one hash that keys caches and names weights in reports."""
import hashlib

from app_server import ROOT
from kd.evaluate import method_key
from kd.registry import WEIGHTS_DIR, weights_digest, weights_note


def test_fingerprint_is_the_sha1_of_the_file(net_path):
    full = hashlib.sha1(open(net_path, "rb").read()).hexdigest()
    assert weights_digest(net_path, length=40) == full and weights_digest(net_path) == full[:12]


def test_evaluation_finds_the_scores_it_stored():
    """kd.evaluate keys scores by the weights' fingerprint: the ones in git are found, not recomputed for hours."""
    stored = {p.stem for p in (ROOT / "results/eval_scores").glob("*.csv")}
    spec = str(WEIGHTS_DIR / "ablation" / "student_gpu.pt")
    assert method_key(spec, "medium") in stored


def test_reports_name_shipped_weights_by_their_fingerprint():
    note = weights_note(["student", "unsharp", "runs/none.pt"])  # only shipped models that exist are named
    assert note.startswith(f"student: weights/student.pt sha1 {weights_digest('student')}") and ";" not in note
