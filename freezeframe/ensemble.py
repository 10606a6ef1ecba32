"""Ensembles: several members saved as one model directory whose predictions average probabilities.

Transformer members are one network (:class:`freezeframe.encoder.AveragedMembers`) saved as one
Hugging Face directory, so ``predict``, ``export`` and ``pipeline()`` treat an ensemble as any
model. Baseline members keep a directory each (``member-0/``, ``member-1/``, ...) and are averaged here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from freezeframe.encoder import AveragedMembers, EncoderClassifier
from freezeframe.errors import FreezeframeError
from freezeframe.predict import META_FILE, Classifier, load_classifier


class EnsembleClassifier(Classifier):
    """Averages the class probabilities of member classifiers that share one label set.

    Args:
        members: :class:`freezeframe.predict.Classifier` objects with identical ``labels``.
        meta: the ensemble's freezeframe.json.
    """

    def __init__(self, members: list, meta: dict | None = None) -> None:
        # Deliberately not Classifier.__init__: the members hold the networks
        if not members:
            raise FreezeframeError("an ensemble needs at least one member")
        if any(m.labels != members[0].labels for m in members):
            raise FreezeframeError("ensemble members disagree on their labels; retrain the ensemble")
        self.members = members
        self.labels = members[0].labels
        self.meta = meta or {}
        self.tokenizer = members[0].tokenizer
        self.max_length = members[0].max_length
        self.model = None  # no single network: export takes the member directories, not the ensemble

    def _probabilities(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Mean of the members' class probabilities, one row per text, in input order."""
        return np.mean([m._probabilities(texts, batch_size) for m in self.members], axis=0)


def has_member_dirs(directory: Path, meta: dict) -> bool:
    """Whether a model directory is an ensemble stored as a directory per member (not one network)."""
    return meta.get("kind") == "ensemble" and not (Path(directory) / "config.json").is_file()


def _one_network(models: list) -> bool:
    return all(isinstance(m, EncoderClassifier) for m in models)


def ensemble_classifier(models: list, tokenizer, labels: list[str], meta: dict):
    """The trained members of ``train_classifier`` as one classifier (no reload from disk)."""
    settings = meta["settings"]
    max_length, device = settings["model"]["max_length"], settings["train"]["device"]
    if _one_network(models):
        return Classifier(AveragedMembers(models), tokenizer, labels, max_length, meta, device)
    return EnsembleClassifier([Classifier(m, tokenizer, labels, max_length, meta, device) for m in models], meta)


def save_ensemble(models: list, tokenizer, meta: dict, directory: Path) -> None:
    """Write the members into ``directory`` (the caller writes its freezeframe.json)."""
    if _one_network(models):
        AveragedMembers(models).save(directory)
        tokenizer.save(directory)
        return
    runs = meta["member_runs"]
    meta["member_dirs"] = []
    for k, member in enumerate(models):
        member_dir = directory / f"member-{k}"
        member_dir.mkdir()
        member.save(member_dir)
        tokenizer.save(member_dir)
        member_meta = {**meta, "kind": getattr(member, "kind", "transformer"), **{key: runs[k][key] for key in runs[k] if key != "seed"}}
        for key in ("members", "member_runs", "member_dirs", "history_of"):
            member_meta.pop(key, None)
        (member_dir / META_FILE).write_text(json.dumps(member_meta, indent=2), encoding="utf-8")
        meta["member_dirs"].append(member_dir.name)


def plan_network(classifier):
    """The network whose freeze plan a loaded classifier shows: its own, or the first member's (all
    members of an ensemble share one plan)."""
    network = classifier.members[0].model if isinstance(classifier, EnsembleClassifier) else classifier.model
    return network.members[0] if isinstance(network, AveragedMembers) else network


def load_ensemble(directory: Path, meta: dict, device: str = "auto") -> EnsembleClassifier:
    """Load an ensemble whose members have a directory each (baselines, and transformer ensembles saved
    before they became one network)."""
    names = meta.get("member_dirs") or (meta["members"] if isinstance(meta.get("members"), list) else [])
    missing = [n for n in names if not (Path(directory) / n).is_dir()]
    if not names or missing:
        raise FreezeframeError(f"{directory}: ensemble members missing ({', '.join(missing) or 'none listed'}); "
                               "retrain with --ensemble")
    return EnsembleClassifier([load_classifier(Path(directory) / n, device) for n in names], meta)
