"""Ensembles: several members saved as one model directory whose predictions average probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from freezeframe.errors import FreezeframeError


class EnsembleClassifier:
    """Averages the class probabilities of member classifiers that share one label set.

    Args:
        members: :class:`freezeframe.predict.Classifier` objects with identical ``labels``.
        meta: the ensemble's freezeframe.json.
    """

    def __init__(self, members: list, meta: dict | None = None) -> None:
        if not members:
            raise FreezeframeError("an ensemble needs at least one member")
        if any(m.labels != members[0].labels for m in members):
            raise FreezeframeError("ensemble members disagree on their labels; retrain the ensemble")
        self.members = members
        self.labels = members[0].labels
        self.meta = meta or {}
        self.tokenizer = members[0].tokenizer
        self.max_length = members[0].max_length
        self.model = None  # no single network: export works on members, not on the ensemble

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Mean of the members' class probabilities, one row per text, in input order."""
        from freezeframe.predict import checked_texts

        texts = checked_texts(texts, batch_size)
        return np.mean([m.predict_proba(texts, batch_size) for m in self.members], axis=0)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        from freezeframe.predict import checked_texts, rows_from_probabilities

        texts = checked_texts(texts, batch_size)
        return rows_from_probabilities(texts, self.predict_proba(texts, batch_size), self.labels)


def load_ensemble(directory: Path, meta: dict, device: str = "auto") -> EnsembleClassifier:
    """Load every member listed in an ensemble directory's freezeframe.json."""
    from freezeframe.predict import load_classifier

    names = meta.get("members") or []
    missing = [n for n in names if not (Path(directory) / n).is_dir()]
    if not names or missing:
        raise FreezeframeError(f"{directory}: ensemble members missing ({', '.join(missing) or 'none listed'}); "
                               "retrain with --ensemble")
    return EnsembleClassifier([load_classifier(Path(directory) / n, device) for n in names], meta)
