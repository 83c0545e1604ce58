"""The study designs (ITU-T P.910 / P.913 / P.808 terms), one class each: what a trial shows, which answers are
valid, what the rater reads and answers with, how a gold trial is failed and how the report scores the votes.

Everything else looks its design up once, ``DESIGNS[cfg.design]``, and asks it; so a new design is one class here,
added to ``DESIGNS`` (the study file's ``design`` accepts exactly the names in it). Plain data and numpy/pandas
only: the statistics (``study.report``, ``study.screening``) and the UI both read it, and neither may need torch.

A *unit* is what one main trial shows, as ``(image, condition_a, condition_b)``: ``condition_b`` is the partner of a
pair, the labelled reference, or None for a single picture. Scores are 1-5; a preference is "a", "b" or "none".
"""
from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import pandas as pd

PREFERENCES = ("a", "b", "none")
ACR = [("5 – Excellent", 5), ("4 – Good", 4), ("3 – Fair", 3), ("2 – Poor", 2), ("1 – Bad", 1)]
DCR = [("5 – Imperceptible", 5), ("4 – Perceptible but not annoying", 4), ("3 – Slightly annoying", 3),
       ("2 – Annoying", 2), ("1 – Very annoying", 1)]
PAIR_ANCHORS = ("What a clear difference looks like (a practice picture, not one you will rate):", "Better", "Worse")


class Design:
    """The base: a single picture scored on the ACR scale. Subclasses say what differs."""

    name: ClassVar[str]
    paired: ClassVar[bool] = False  # a unit is two conditions side by side, sides drawn at random and swapped on repeat
    needs_reference: ClassVar[bool] = False  # the study file must have a kind = "reference" condition
    asks: ClassVar[tuple[bool, bool, bool]] = (True, False, False)  # (score_a, score_b, preference) wanted
    ties_optional: ClassVar[bool] = False  # "no difference" offered only when the study allows ties
    # what the rater reads
    instructions: ClassVar[str]
    anchors: ClassVar[tuple[str, str, str]]  # (sentence above the practice photo's anchors, best label, worst label)
    left_label: ClassVar[str] = "Picture"
    right_label: ClassVar[str | None] = None  # None: no second picture
    scale: ClassVar[list] = ACR  # the choices of every score
    score_label: ClassVar[str] = "Quality of the picture"  # the single score's question (designs with one score)
    reference_left: ClassVar[bool] = False  # show condition_b (the labelled reference) on the left
    # how the report scores it
    rank_by: ClassVar[str] = "MOS"  # "MOS" or "bt" (Bradley–Terry strength)
    dmos: ClassVar[bool] = False  # ACR-HR differential scores against the hidden reference
    rates_reference: ClassVar[bool] = True  # False: the reference is the labelled comparison, never a rated condition
    report_note: ClassVar[str] = ""  # a caveat the report's summary adds

    # --- what a trial shows ---------------------------------------------------------------------
    def units(self, images: list[str], conditions: list[str], reference: str | None) -> list[tuple]:
        """Every (image, condition_a, condition_b) a main trial can show."""
        return [(im, c, None) for im in images for c in conditions]

    def gold(self, image: str, reference: str, gold: str) -> tuple:
        """The clear-cut trial with a known answer: the hidden reference against a severe degradation."""
        return image, gold, None

    def training(self, image: str, best: str, worst: str, swap: bool) -> tuple:
        """A practice trial on a training photo, from its best and worst anchors (``swap``: a fair coin)."""
        return image, worst if swap else best, None

    def sides(self, stimulus_a, stimulus_b) -> tuple:
        """(left, right) on the screen."""
        return (stimulus_b, stimulus_a) if self.reference_left else (stimulus_a, stimulus_b)

    # --- answers --------------------------------------------------------------------------------
    @property
    def scored(self) -> bool:
        return self.asks[0]

    @property
    def preferred(self) -> bool:
        return self.asks[2]

    @property
    def score_each(self) -> bool:
        """Both pictures of a pair scored (else at most one score, given with ``score_label``)."""
        return self.asks[0] and self.asks[1]

    def preferences(self, allow_ties: bool) -> tuple[str, ...]:
        return PREFERENCES if allow_ties or not self.ties_optional else ("a", "b")

    def answer(self, score_a, score_b, score, preference) -> tuple:
        """The UI's widgets (two scores, a single score, a preference) -> what is stored (score_a, score_b, preference)."""
        scores = (score_a, score_b) if self.score_each else (score, None)
        return (*(s if wanted else None for s, wanted in zip(scores, self.asks)), preference if self.asks[2] else None)

    def missing(self, answer: tuple) -> bool:
        return any(v is None for v, wanted in zip(answer, self.asks) if wanted)

    def check_answer(self, allow_ties: bool, score_a, score_b, preference) -> None:
        for given, wanted, what in zip((score_a, score_b, preference), self.asks, ("score_a", "score_b", "preference")):
            if (given is not None) != wanted:
                raise ValueError(f"design {self.name!r} {'needs' if wanted else 'takes no'} {what}")
        allowed = self.preferences(allow_ties)
        if preference is not None and preference not in allowed:
            raise ValueError(f"preference must be one of {', '.join(allowed)}")
        for s in (score_a, score_b):
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= 5):
                raise ValueError("scores must be whole numbers from 1 to 5")

    # --- screening ------------------------------------------------------------------------------
    def gold_failed(self, g: pd.DataFrame) -> pd.Series:
        """Per gold vote, whether it failed. ``g`` has the votes' columns and ``prefers_bad``, ``tie``,
        ``ref_score``, ``bad_score`` (the reference's and the degradation's score where both were scored) and
        ``score_a`` as numbers. A single picture fails at 4 or 5 ("good"; dcr: "not annoying")."""
        return g.score_a >= 4


class PairedComparison(Design):
    """pc: two versions side by side, the rater picks the better (or "no difference", when allowed)."""

    name = "pc"
    paired = True
    asks = (False, False, True)
    ties_optional = True
    instructions = ("You will see two versions of the same picture, **A** and **B**. Choose the one whose **quality** "
                    "looks better: sharper, less blocky, less blurred.")
    anchors = PAIR_ANCHORS
    left_label, right_label = "A", "B"
    rank_by = "bt"

    def units(self, images, conditions, reference):
        return [(im, a, b) for im in images for a, b in itertools.combinations(conditions, 2)]

    def gold(self, image, reference, gold):
        return image, reference, gold

    def training(self, image, best, worst, swap):
        return (image, worst, best) if swap else (image, best, worst)

    def gold_failed(self, g):
        return g.prefers_bad | g.tie


class AB(PairedComparison):
    """ab: side by side, both scored and one preferred; the scores are relative to the partner (no DMOS)."""

    name = "ab"
    asks = (True, True, True)
    ties_optional = False
    instructions = ("You will see pairs of pictures, **A** and **B**, showing the same scene after different "
                    "processing. Rate the quality of **each** picture from 1 (bad) to 5 (excellent), then say which one "
                    "looks better.")
    rank_by = "MOS"
    report_note = ("In the side-by-side (ab) design each score is given next to a partner picture, so these MOS are "
                   "relative to the partners shown, not absolute ACR scores; no DMOS is computed from them.")

    def gold_failed(self, g):
        return (g.bad_score >= g.ref_score) | g.prefers_bad


class ACRHR(Design):
    """acr-hr: one picture at a time, scored 1-5, the reference hidden among them: MOS and DMOS."""

    name = "acr-hr"
    needs_reference = True
    instructions = ("You will see one picture at a time. Rate its **quality** from 1 (bad) to 5 (excellent): sharpness, "
                    "blockiness, blur.")
    anchors = ("The best and the worst quality you can expect (a practice picture, not one you will rate):",
               "Best (5)", "Worst (1)")
    dmos = True


class DCR(Design):
    """dcr: the labelled reference on the left, the processed picture on the right, scored 5 imperceptible … 1 very
    annoying."""

    name = "dcr"
    needs_reference = True
    instructions = ("You will see a **reference** picture on the left and a **processed** version of it on the right. "
                    "Rate how much the processed picture is **impaired** compared with the reference, from 5 "
                    "(imperceptible) to 1 (very annoying).")
    anchors = ("The reference and the most annoying impairment you can expect (a practice picture, not one you will "
               "rate):", "Reference", "Very annoying (1)")
    left_label, right_label = "Reference", "Processed"
    scale = DCR
    score_label = "How impaired is the processed picture?"
    reference_left = True
    rates_reference = False

    def units(self, images, conditions, reference):
        return [(im, c, reference) for im in images for c in conditions if c != reference]

    def gold(self, image, reference, gold):
        return image, gold, reference

    def training(self, image, best, worst, swap):
        return image, worst, best  # the worst impairment beside its reference


DESIGNS: dict[str, Design] = {d.name: d for d in (PairedComparison(), ACRHR(), DCR(), AB())}
DEFAULT = "pc"  # a study file without a design
LEGACY = "ab"  # votes stored or imported without a design column were side-by-side ratings
