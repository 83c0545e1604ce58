"""Teacher labels made once, so a student can be distilled where the teacher is too slow to run at every step.

    python -m kd.labels --teacher weights/teacher.pt --n 3000 --out data/teacher_labels.npz
    python -m kd.train --model student-rep --teacher-labels data/teacher_labels.npz --out runs/student.pt

On 2 CPU cores the 4.9 M-parameter teacher takes ~0.5 s per 128² patch, a few hundred times a student's training
step on the same patch, so online distillation would spend nearly all its time in the teacher. Here the teacher
labels a pool of training patches (``PatchDataset``: the training distribution, zoomed out like call frames) once;
any number of student runs then reuse it. The file stores (degraded, teacher output, clean) as uint8 and the
teacher's hash; it grows in place when run again with a larger ``--n`` (same teacher), so an interrupted run
loses at most one chunk. A stream-aware teacher is told each patch's stream as training tells it (some blind, some
the scale alone), and the file stores that stream, so a stream-aware student is told it too; patches are drawn as
``kd.train`` draws them (``--ladder-share``, ``--call-data``), so a run from labels and one from the photos see alike.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kd import checkpoint
from kd.data import PatchDataset, augment, load_training, paired_random_crop, to_tensor
from kd import calldata
from kd.degrade import stream_condition
from kd.models import stream_aware
from kd.registry import weights_digest

ARRAYS = ("degraded", "clean", "teacher")  # stored arrays; LabelledPatches yields the stream between clean and teacher


def load_labels(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of a labels file, NxHxWx3 uint8 each (and ``teacher_hash``)."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"no teacher labels at {path}: make them with `python -m kd.labels --teacher ...`")
    z = np.load(path)
    missing = [k for k in ARRAYS if k not in z.files]
    if missing:
        raise SystemExit(f"{path} is not a teacher-labels file (no {', '.join(missing)})")
    return {k: z[k] for k in z.files}


@torch.no_grad()
def make_labels(teacher_path: Path, data: Path, out: Path, n: int, patch: int = 128, zoom: float = 3.0,
                seed: int = 0, batch: int = 8, chunk: int = 200, threads: int = 0, ladder_share: float = 0.0,
                call_data: Path | None = None, call_share: float = 0.0) -> Path:
    """Label ``n`` training patches with the teacher (uncored: coring is for showing, not for teaching)."""
    if threads:
        torch.set_num_threads(threads)
    teacher = checkpoint.load_model(teacher_path).float().eval()
    teacher.config["coring"] = 0.0
    teacher.config.pop("told_coring", None)  # uncored told or not
    teacher = teacher.to(memory_format=torch.channels_last)
    digest, told = weights_digest(teacher_path), stream_aware(teacher)
    kept = (*ARRAYS, "stream") if told else ARRAYS
    have = {k: [] for k in kept}
    if out.exists():
        old = load_labels(out)
        if str(old.get("teacher_hash")) != digest:
            raise SystemExit(f"{out} was labelled by another teacher ({old.get('teacher_hash')}); use a new --out")
        have = {k: [old[k]] for k in kept}
    done = sum(len(a) for a in have["clean"])
    if done >= n:
        print(f"{out} already holds {done} ≥ {n} labelled patches")
        return out
    train = load_training(data, data.parent / "val", patch)  # (its validation pairs are not used here)
    call_pairs = calldata.load(call_data)[0] if call_data else []
    ds = PatchDataset(train.images, patch, seed=seed * 1000 + done, weights=train.weights,  # fresh on each growth
                      codec_pairs=train.codec_pairs, zoom=zoom, ladder_share=ladder_share, call_pairs=call_pairs,
                      call_share=call_share)
    stream = iter(ds)
    bar = tqdm(total=n, initial=done, desc="teacher labels", unit="patch")
    while done < n:
        new, todo = {k: [] for k in kept}, min(chunk, n - done)
        while todo:
            pairs = [next(stream) for _ in range(min(batch, todo))]
            todo -= len(pairs)
            x = torch.stack([p[0] for p in pairs]).contiguous(memory_format=torch.channels_last)
            condition = torch.stack([p[2] for p in pairs])
            t = teacher(x, stream=condition if told else None).clamp(0, 1)
            for name, v in (("degraded", x), ("teacher", t), ("clean", torch.stack([p[1] for p in pairs]))):
                new[name].append((v * 255).round().byte().permute(0, 2, 3, 1).numpy())
            if told:
                new["stream"].append(condition.numpy().astype(np.float32))
            bar.update(len(pairs))
        for k in kept:
            have[k].append(np.concatenate(new[k]))
        done = sum(len(a) for a in have["clean"])
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.stem + ".tmp.npz")
        np.savez(tmp, teacher_hash=digest, args=json.dumps(dict(
                     teacher=str(teacher_path), patch=patch, zoom=zoom, ladder_share=ladder_share,
                     call_data=str(call_data) if call_data else None, call_share=call_share)),
                 **{k: np.concatenate(v) for k, v in have.items()})
        tmp.replace(out)
    bar.close()
    print(f"{out}: {done} patches of {patch}² labelled by {teacher_path} ({digest})")
    return out


class LabelledPatches(torch.utils.data.IterableDataset):
    """Endless (degraded, clean, stream, teacher) patches: a random stored patch, a random ``patch``² window of it and
    one of the 8 flips/rotations, the same for all three images (the teacher is near-equivariant to both). The
    stream is the one the teacher was told (stored by a stream-aware teacher), else "not told" (zeros), as for the
    blind teacher that labelled it."""

    def __init__(self, labels: dict[str, np.ndarray], patch: int, seed: int = 0, rank: int = 0):
        side = labels["clean"].shape[1]
        if patch > side:
            raise SystemExit(f"--patch {patch} is larger than the labelled patches ({side}²)")
        self.labels, self.patch, self.seed, self.rank = labels, patch, seed, rank

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, info.id if info else 0, 7])
        n = len(self.labels["clean"])
        while True:
            i = int(rng.integers(n))
            stack = np.concatenate([self.labels[k][i] for k in ARRAYS], axis=2)  # one crop for all three
            window = augment([paired_random_crop(stack, stack, self.patch, rng)[1]], rng)[0]
            degraded, clean, teacher = (to_tensor(window[..., 3 * j: 3 * j + 3]) for j in range(3))
            told = self.labels["stream"][i] if "stream" in self.labels else stream_condition(None)
            yield degraded, clean, torch.from_numpy(np.asarray(told, np.float32)), teacher


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.labels", description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=Path("weights/teacher.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/train"), help="folder of photos or a packed .npz shard")
    ap.add_argument("--out", type=Path, default=Path("data/teacher_labels.npz"))
    ap.add_argument("--n", type=int, default=3000, help="patches in the file when done (grows an existing file)")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--zoom", type=float, default=3.0, help="zoom photos out by up to this factor (kd.data.zoomed_crop)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ladder-share", type=float, default=0.5, help="as kd.train's: scales on a call's ladder")
    ap.add_argument("--call-data", type=Path, default=None, help="call video pairs (kd.calldata pack), as kd.train's")
    ap.add_argument("--call-share", type=float, default=0.0)
    a = ap.parse_args(argv)
    make_labels(a.teacher, a.data, a.out, a.n, a.patch, a.zoom, a.seed, a.batch, threads=a.threads,
                ladder_share=a.ladder_share, call_data=a.call_data, call_share=a.call_share)


if __name__ == "__main__":
    main()
