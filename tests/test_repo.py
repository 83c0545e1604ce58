"""What git tracks: files that tools leave in a checkout stay out of it."""
import subprocess

from app_server import ROOT


def test_build_leftovers_and_data_are_ignored():
    """``pip install .`` writes sharpkd.egg-info/ and build/; data/ may be a folder or a link to one elsewhere."""
    leftovers = ["sharpkd.egg-info/PKG-INFO", "build/lib/kd/sharpen.py", "data"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *leftovers], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == leftovers
