"""Per-region threshold calibration, product verdicts and k-of-n run acceptance (numpy only).

Rule everywhere: a patch is rejected when ``score > threshold`` of its region (docs/architecture.md).

Calibration picks, per region, one of the distinct operating points of that region's calibration scores
(:func:`tfad.scoring.metrics.candidate_thresholds`: halfway between adjacent distinct scores), so a
threshold never sits exactly on a calibration score and the result does not depend on sample order.
Policies (docs/evaluation.md has guidance on when to use which):

``max-accuracy``
    maximise (good accepted + defective rejected) / all, as in the thesis (003 ch. 10.5.4).
``max-balanced-accuracy``
    maximise (true-accept rate + true-reject rate) / 2; with one class present, that class's rate.
``no-defect-accepted``
    the highest threshold that still rejects every labelled defective patch of the region (halfway
    between the smallest defect score and the next lower distinct score). Region without defective
    samples: the maximum good score (every calibration good accepted); flagged ``fallback``.
``false-reject-budget``
    the lowest threshold whose false-reject rate on good patches is <= ``false_reject_budget``
    (at most ``floor(budget * n_good)`` goods rejected). Region without good samples: below the lowest
    score (the ``no-defect-accepted`` operating point); flagged ``fallback``.
``n-sigma``
    ``mean + k * std`` of the region's good scores (``n_sigma_k`` = k, sample std), seed 004's rule: needs
    no labelled defects, only held-out good images (never the training images, whose scores are
    optimistic). Defective samples, if any, are ignored by the rule and only reported. A region with one
    good sample has std 0 (the threshold is its score); without good samples: below the lowest score,
    flagged ``fallback``. Unlike the other policies the threshold is not snapped to an operating point.

Ties in the objective go to the lowest threshold (the one that rejects more), the safe side on a
pharmaceutical line.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tfad.scoring.metrics import Confusion, candidate_thresholds, confusion_at, rejection_counts

if TYPE_CHECKING:
    from tfad.scoring.table import ScoreTable

__all__ = [
    "POLICIES",
    "ProductVerdicts",
    "RegionCalibration",
    "RunAcceptance",
    "ThresholdTable",
    "calibrate",
    "calibrate_table",
    "patch_decisions",
    "product_verdicts",
    "required_runs",
    "run_acceptance",
    "select_threshold",
]

POLICIES = ("max-accuracy", "max-balanced-accuracy", "no-defect-accepted", "false-reject-budget", "n-sigma")
DEFAULT_RULES = ("pooled", "strictest")


# --------------------------------------------------------------------------------------------------
# calibration


@dataclass(frozen=True)
class RegionCalibration:
    """How one region's threshold was chosen and how it performs on the calibration data."""

    region: str
    threshold: float
    n_good: int
    n_defective: int
    rule: str  # human-readable: the policy's rule, or the fallback that was applied
    fallback: bool  # True when the policy's own rule could not apply (missing class)
    calibration: Confusion  # counts/rates at ``threshold`` on the calibration samples

    def as_dict(self) -> dict:
        return {
            "region": self.region,
            "threshold": self.threshold,
            "n_good": self.n_good,
            "n_defective": self.n_defective,
            "rule": self.rule,
            "fallback": self.fallback,
            "calibration": self.calibration.as_dict(),
        }


def _check_policy(policy: str, false_reject_budget: float | None, n_sigma_k: float | None = None) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "n-sigma":
        if n_sigma_k is None:
            raise ValueError("policy 'n-sigma' needs n_sigma_k (e.g. 3)")
        if not (math.isfinite(float(n_sigma_k)) and float(n_sigma_k) >= 0.0):
            raise ValueError(f"n_sigma_k must be a finite number >= 0, got {n_sigma_k}")
    elif n_sigma_k is not None:
        raise ValueError(f"n_sigma_k only applies to 'n-sigma', not {policy!r}")
    if policy == "false-reject-budget":
        if false_reject_budget is None:
            raise ValueError("policy 'false-reject-budget' needs false_reject_budget (e.g. 0.01)")
        if not 0.0 <= float(false_reject_budget) < 1.0:
            raise ValueError(f"false_reject_budget must be in [0, 1), got {false_reject_budget}")
    elif false_reject_budget is not None:
        raise ValueError(f"false_reject_budget only applies to 'false-reject-budget', not {policy!r}")


def select_threshold(
    scores: Iterable[float],
    labels: Iterable[int],
    policy: str,
    false_reject_budget: float | None = None,
    n_sigma_k: float | None = None,
) -> tuple[float, str, bool]:
    """Threshold for one group of samples under ``policy``; returns ``(threshold, rule, fallback)``.

    ``scores`` must be finite, ``labels`` 0/1, at least one sample. See the module docstring for the
    policies (``false_reject_budget`` and ``n_sigma_k`` are the parameters of the policies so named).
    """
    _check_policy(policy, false_reject_budget, n_sigma_k)
    scores_arr = np.asarray(scores, dtype=np.float64)
    labels_arr = np.asarray(labels)
    if scores_arr.ndim != 1 or scores_arr.shape != labels_arr.shape:
        raise ValueError(
            f"scores and labels must be 1-D of equal length, got {scores_arr.shape} and {labels_arr.shape}"
        )
    if scores_arr.size == 0:
        raise ValueError("cannot calibrate a threshold without samples")
    if not np.isfinite(scores_arr).all():
        raise ValueError("calibration scores contain NaN/inf")
    if not np.isin(labels_arr, (0, 1)).all():
        raise ValueError("calibration labels must be 0 (good) or 1 (defective); drop unknown (-1) samples")
    labels_arr = labels_arr.astype(np.int64)
    n_def = int(labels_arr.sum())
    n_good = int(labels_arr.size - n_def)
    cands = candidate_thresholds(scores_arr)
    if policy == "n-sigma":
        return _n_sigma_threshold(scores_arr[labels_arr == 0], float(n_sigma_k), float(cands[0]))
    good_rej, def_rej = rejection_counts(labels_arr, scores_arr, cands)

    if policy == "max-accuracy":
        accuracy = (n_good - good_rej + def_rej) / labels_arr.size
        best = int(np.argmax(accuracy))  # first maximum = lowest threshold
        return float(cands[best]), "maximum accuracy (ties: lowest threshold)", False

    if policy == "max-balanced-accuracy":
        rates = []
        if n_good:
            rates.append((n_good - good_rej) / n_good)
        if n_def:
            rates.append(def_rej / n_def)
        balanced = sum(rates) / len(rates)
        best = int(np.argmax(balanced))
        if n_good and n_def:
            return float(cands[best]), "maximum balanced accuracy (ties: lowest threshold)", False
        only = "good" if n_good else "defective"
        return (
            float(cands[best]),
            f"only {only} samples: maximum {only} rate (ties: lowest threshold)",
            True,
        )

    if policy == "no-defect-accepted":
        if n_def == 0:
            return (
                float(scores_arr.max()),
                "no defective samples: maximum good score (every calibration good accepted)",
                True,
            )
        best = int(np.flatnonzero(def_rej == n_def).max())  # highest threshold rejecting every defect
        return float(cands[best]), "highest threshold rejecting every defective sample", False

    # false-reject-budget
    budget = float(false_reject_budget)
    if n_good == 0:
        return (
            float(cands[0]),
            "no good samples: below the lowest score (no-defect-accepted operating point)",
            True,
        )
    # tolerance so e.g. 0.29 * 100 = 28.999999999999996 allows 29 rejections
    allowed = math.floor(budget * n_good + 1e-9)
    best = int(np.flatnonzero(good_rej <= allowed).min())  # lowest threshold within the budget
    return (
        float(cands[best]),
        f"lowest threshold with false-reject rate <= {budget:g} (at most {allowed} of {n_good} goods)",
        False,
    )


def _n_sigma_threshold(good_scores: np.ndarray, k: float, below_lowest: float) -> tuple[float, str, bool]:
    if good_scores.size == 0:
        return (
            below_lowest,
            "no good samples: below the lowest score (no-defect-accepted operating point)",
            True,
        )
    mean = float(good_scores.mean())
    std = float(good_scores.std(ddof=1)) if good_scores.size > 1 else 0.0
    return (
        mean + k * std,
        f"mean + {k:g} * std of {good_scores.size} good scores ({mean:.6g} + {k:g} * {std:.6g})",
        False,
    )


@dataclass
class ThresholdTable:
    """Per-region thresholds plus how they were obtained.

    ``regions`` maps region name -> threshold; ``default`` (or ``None``) applies to regions not listed.
    :meth:`to_manifest` gives exactly the manifest's ``thresholds`` block.
    """

    policy: str
    regions: dict[str, float]
    default: float | None = None
    per_region_stats: dict[str, RegionCalibration] = field(default_factory=dict)
    false_reject_budget: float | None = None
    default_rule: str | None = None
    n_sigma_k: float | None = None

    def __post_init__(self) -> None:
        for name, value in self.regions.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"region names must be non-empty strings, got {name!r}")
            if value is None or not math.isfinite(float(value)):
                raise ValueError(f"threshold of region {name!r} must be a finite number, got {value!r}")
        if self.default is not None and not math.isfinite(float(self.default)):
            raise ValueError(f"default threshold must be a finite number or None, got {self.default!r}")

    def threshold_for(self, region: str) -> float:
        """The region's threshold, else ``default``; raises ``KeyError`` when neither exists."""
        if region in self.regions:
            return float(self.regions[region])
        if self.default is not None:
            return float(self.default)
        known = ", ".join(sorted(self.regions)) or "none"
        raise KeyError(
            f"no threshold for region {region!r} and no default threshold (calibrated regions: {known})"
        )

    def thresholds_for(self, regions: Iterable[str]) -> np.ndarray:
        """Vector of thresholds, one per element of ``regions``."""
        regions_arr = np.asarray(list(regions) if not isinstance(regions, np.ndarray) else regions)
        out = np.empty(regions_arr.shape[0], dtype=np.float64)
        for name in np.unique(regions_arr):
            out[regions_arr == name] = self.threshold_for(str(name))
        return out

    def to_manifest(self) -> dict:
        """The manifest's ``thresholds`` block: ``{"policy", "regions", "default"}``."""
        return {
            "policy": self.policy,
            "regions": {name: float(value) for name, value in sorted(self.regions.items())},
            "default": None if self.default is None else float(self.default),
        }

    @classmethod
    def from_manifest(cls, block: dict | None) -> ThresholdTable:
        """Read a manifest ``thresholds`` block (extra keys such as report statistics are ignored)."""
        if block is None:
            raise ValueError('the manifest has no thresholds ("thresholds": null): run `tfad calibrate`')
        if not isinstance(block, dict) or "regions" not in block:
            raise ValueError(f"thresholds block must be an object with 'regions', got {block!r}")
        regions = block["regions"]
        if not isinstance(regions, dict):
            raise ValueError(f"thresholds.regions must map region name -> number, got {regions!r}")
        for name, value in regions.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"thresholds.regions[{name!r}] must be a number, got {value!r}")
        default = block.get("default")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int | float)):
            raise ValueError(f"thresholds.default must be a number or null, got {default!r}")
        return cls(
            policy=str(block.get("policy", "unknown")),
            regions={str(k): float(v) for k, v in regions.items()},
            default=None if default is None else float(default),
            false_reject_budget=block.get("false_reject_budget"),
            n_sigma_k=block.get("n_sigma_k"),
        )

    def to_dict(self) -> dict:
        """Manifest block plus calibration details, for reports."""
        out = self.to_manifest()
        out["false_reject_budget"] = self.false_reject_budget
        out["n_sigma_k"] = self.n_sigma_k
        out["default_rule"] = self.default_rule
        out["per_region"] = {name: stats.as_dict() for name, stats in sorted(self.per_region_stats.items())}
        return out


def calibrate(
    scores: Iterable[float],
    labels: Iterable[int],
    regions: Iterable[str],
    policy: str = "max-accuracy",
    false_reject_budget: float | None = None,
    default: float | str | None = None,
    n_sigma_k: float | None = None,
) -> ThresholdTable:
    """Calibrate one threshold per region on labelled patch scores.

    Args:
        scores: patch scores (higher = more anomalous), finite.
        labels: 0 good / 1 defective per patch (drop unknown ``-1`` beforehand).
        regions: region name per patch (``"all"`` for data without regions).
        policy: one of :data:`POLICIES`.
        false_reject_budget: required for ``"false-reject-budget"`` (e.g. 0.01), else must be None.
        default: threshold for regions absent from calibration: ``None`` (such regions are an error at
            decision time), a number, ``"pooled"`` (the same policy on all samples together) or
            ``"strictest"`` (the lowest region threshold).
        n_sigma_k: required for ``"n-sigma"`` (k of mean + k * std), else must be None.
    """
    _check_policy(policy, false_reject_budget, n_sigma_k)
    scores_arr = np.asarray(scores, dtype=np.float64)
    labels_arr = np.asarray(labels)
    regions_arr = np.asarray([str(r) for r in regions])
    if not (scores_arr.ndim == labels_arr.ndim == regions_arr.ndim == 1) or not (
        scores_arr.shape == labels_arr.shape == regions_arr.shape
    ):
        raise ValueError(
            f"scores, labels and regions must be 1-D of equal length, got {scores_arr.shape}, "
            f"{labels_arr.shape}, {regions_arr.shape}"
        )
    if scores_arr.size == 0:
        raise ValueError("no calibration samples")
    thresholds: dict[str, float] = {}
    stats: dict[str, RegionCalibration] = {}
    for region in sorted(set(regions_arr.tolist())):
        sel = regions_arr == region
        try:
            thr, rule, fallback = select_threshold(
                scores_arr[sel], labels_arr[sel], policy, false_reject_budget, n_sigma_k
            )
        except ValueError as exc:
            raise ValueError(f"region {region!r}: {exc}") from exc
        thresholds[region] = thr
        region_labels = labels_arr[sel].astype(np.int64)
        stats[region] = RegionCalibration(
            region=region,
            threshold=thr,
            n_good=int((region_labels == 0).sum()),
            n_defective=int((region_labels == 1).sum()),
            rule=rule,
            fallback=fallback,
            calibration=confusion_at(region_labels, scores_arr[sel], thr),
        )
    default_value: float | None
    default_rule: str | None
    if default is None:
        default_value, default_rule = None, None
    elif isinstance(default, str):
        if default == "pooled":
            default_value, rule, _ = select_threshold(
                scores_arr, labels_arr, policy, false_reject_budget, n_sigma_k
            )
            default_rule = f"pooled over all regions: {rule}"
        elif default == "strictest":
            default_value, default_rule = min(thresholds.values()), "lowest region threshold"
        else:
            raise ValueError(f"default must be a number, None, or one of {DEFAULT_RULES}, got {default!r}")
    else:
        default_value, default_rule = float(default), "given"
    return ThresholdTable(
        policy=policy,
        regions=thresholds,
        default=default_value,
        per_region_stats=stats,
        false_reject_budget=None if false_reject_budget is None else float(false_reject_budget),
        default_rule=default_rule,
        n_sigma_k=None if n_sigma_k is None else float(n_sigma_k),
    )


def calibrate_table(
    table: ScoreTable,
    policy: str = "max-accuracy",
    false_reject_budget: float | None = None,
    default: float | str | None = None,
    n_sigma_k: float | None = None,
) -> ThresholdTable:
    """:func:`calibrate` on the labelled rows (label 0/1) of a score table; unknown (-1) rows are dropped."""
    labelled = table.labels != -1
    if not labelled.any():
        raise ValueError("the score table has no labelled sample (label 0 or 1) to calibrate on")
    return calibrate(
        table.scores[labelled],
        table.labels[labelled],
        table.regions[labelled],
        policy=policy,
        false_reject_budget=false_reject_budget,
        default=default,
        n_sigma_k=n_sigma_k,
    )


# --------------------------------------------------------------------------------------------------
# decisions


def patch_decisions(
    scores: Iterable[float],
    regions: Iterable[str],
    table: ThresholdTable,
    incomplete: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean reject decision per patch: ``score > threshold of its region`` (``default`` if unlisted), or
    ``incomplete`` (the patches the servers would not score: :class:`tfad.scoring.acquisition.PatchGate`).

    Raises ``KeyError`` for a region with no threshold and no default, ``ValueError`` for NaN scores.
    """
    scores_arr = np.asarray(scores, dtype=np.float64)
    regions_list = list(regions) if not isinstance(regions, np.ndarray) else regions
    if scores_arr.ndim != 1 or len(regions_list) != scores_arr.shape[0]:
        raise ValueError(
            f"scores and regions must be 1-D of equal length, got {scores_arr.shape} and {len(regions_list)}"
        )
    if not np.isfinite(scores_arr).all():
        raise ValueError("scores contain NaN/inf; cannot decide")
    rejected = scores_arr > table.thresholds_for(regions_list)
    if incomplete is not None:
        incomplete = np.asarray(incomplete, dtype=bool)
        if incomplete.shape != rejected.shape:
            raise ValueError(f"incomplete has shape {incomplete.shape}, scores {rejected.shape}")
        rejected |= incomplete
    return rejected


@dataclass(frozen=True)
class ProductVerdicts:
    """One entry per product key, in order of first appearance.

    ``score`` is the max patch score (Eq. 10.3); ``rejected`` is True when any patch exceeds its region's
    threshold or is incomplete (not scored by the servers). ``margin`` = max over patches of (score - region
    threshold): > 0 exactly when a score is above its threshold, and comparable across regions unlike
    ``score``. ``label`` (when labels were given) is 1 if any patch is
    defective. ``patch_index[i]`` is the product index of input patch ``i``.
    """

    keys: list[Hashable]
    score: np.ndarray
    rejected: np.ndarray
    margin: np.ndarray
    n_patches: np.ndarray
    n_rejected_patches: np.ndarray
    label: np.ndarray | None
    patch_index: np.ndarray


def _group(keys: Sequence[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    index: dict[Hashable, int] = {}
    inverse = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        inverse[i] = index.setdefault(key, len(index))
    return list(index), inverse


def product_verdicts(
    scores: Iterable[float],
    regions: Iterable[str],
    product_keys: Sequence[Hashable],
    table: ThresholdTable,
    labels: Iterable[int] | None = None,
    incomplete: np.ndarray | None = None,
) -> ProductVerdicts:
    """Aggregate patch decisions to products: reject if any patch is rejected; score = max (Eq. 10.3).

    ``product_keys`` identifies one acquisition of one product, e.g. ``(run_id, product_id)``; the same
    physical product in another run must get a different key. ``incomplete`` marks the patches the servers
    would not score (:func:`patch_decisions`): their product is rejected.
    """
    scores_arr = np.asarray(scores, dtype=np.float64)
    keys_list = list(product_keys)
    rejected_patch = patch_decisions(scores_arr, regions, table, incomplete)
    if len(keys_list) != scores_arr.shape[0]:
        raise ValueError(f"product_keys has {len(keys_list)} entries for {scores_arr.shape[0]} scores")
    thresholds = table.thresholds_for(list(regions) if not isinstance(regions, np.ndarray) else regions)
    keys, inverse = _group(keys_list)
    n = len(keys)
    score = np.full(n, -np.inf)
    np.maximum.at(score, inverse, scores_arr)
    margin = np.full(n, -np.inf)
    np.maximum.at(margin, inverse, scores_arr - thresholds)
    n_patches = np.bincount(inverse, minlength=n)
    n_rejected = np.bincount(inverse, weights=rejected_patch.astype(np.float64), minlength=n).astype(np.int64)
    product_label = None
    if labels is not None:
        labels_arr = np.asarray(labels)
        if labels_arr.shape != scores_arr.shape:
            raise ValueError(f"labels has shape {labels_arr.shape}, scores {scores_arr.shape}")
        if not np.isin(labels_arr, (0, 1)).all():
            raise ValueError("labels must be 0 (good) or 1 (defective)")
        product_label = np.zeros(n, dtype=np.int64)
        np.maximum.at(product_label, inverse, labels_arr.astype(np.int64))
    return ProductVerdicts(
        keys=keys,
        score=score,
        rejected=n_rejected > 0,
        margin=margin,
        n_patches=n_patches,
        n_rejected_patches=n_rejected,
        label=product_label,
        patch_index=inverse,
    )


# --------------------------------------------------------------------------------------------------
# k-of-n run acceptance


def required_runs(n_runs: int, k: int = 7, n: int = 10) -> int:
    """Runs that must agree for a product acquired ``n_runs`` times: ``k`` when ``n_runs == n``, else
    ``ceil(k * n_runs / n)`` (e.g. 7-of-10 -> 3 of 3, 4 of 5, 9 of 12)."""
    if n_runs <= 0:
        raise ValueError(f"n_runs must be positive, got {n_runs}")
    return k if n_runs == n else math.ceil(k * n_runs / n)


@dataclass(frozen=True)
class RunAcceptance:
    """Per-product k-of-n outcome and the summary over products."""

    k: int
    n: int
    products: list[dict]
    summary: dict

    def as_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "summary": self.summary, "products": self.products}


def run_acceptance(
    product_ids: Sequence[Hashable],
    rejected: Iterable[bool],
    true_labels: Iterable[int],
    k: int = 7,
    n: int = 10,
) -> RunAcceptance:
    """k-of-n acceptance (003 ch. 10.5.4): a product is correctly classified when at least ``k`` of its
    ``n`` runs give its true label.

    One input element per (product, run) verdict: ``product_ids[i]`` the physical product,
    ``rejected[i]`` that run's product verdict, ``true_labels[i]`` the product's label (must be the same
    in all of its runs). A product with ``m != n`` runs needs ``ceil(k * m / n)`` agreeing runs
    (:func:`required_runs`; flagged ``k_scaled``). Final decision: ``"reject"`` when at least the
    required number of runs rejected, ``"accept"`` when at least that many accepted, else
    ``"undecided"`` (counts as not correctly classified). ``k > n / 2`` is required so that at most one
    decision can reach the quorum.
    """
    if not (isinstance(k, int) and isinstance(n, int)) or n <= 0 or not 0 < k <= n:
        raise ValueError(f"need integers 0 < k <= n, got k={k!r}, n={n!r}")
    if 2 * k <= n:
        raise ValueError(
            f"k-of-n acceptance needs k > n/2 (got {k} of {n}): otherwise both decisions "
            "could reach the quorum"
        )
    ids = list(product_ids)
    rejected_arr = np.asarray(rejected, dtype=bool)
    labels_arr = np.asarray(true_labels)
    if not (len(ids) == rejected_arr.shape[0] == labels_arr.shape[0]):
        raise ValueError(
            f"product_ids, rejected and true_labels must have equal length, got {len(ids)}, "
            f"{rejected_arr.shape[0]}, {labels_arr.shape[0]}"
        )
    if not np.isin(labels_arr, (0, 1)).all():
        raise ValueError("true_labels must be 0 (good) or 1 (defective)")
    keys, inverse = _group(ids)
    # per-product counts in one pass (no per-product scan of all verdicts)
    n_products = len(keys)
    run_counts = np.bincount(inverse, minlength=n_products)
    rejected_counts = np.bincount(inverse, weights=rejected_arr.astype(np.float64), minlength=n_products)
    label_min = np.full(n_products, 2, dtype=np.int64)
    label_max = np.full(n_products, -1, dtype=np.int64)
    np.minimum.at(label_min, inverse, labels_arr.astype(np.int64))
    np.maximum.at(label_max, inverse, labels_arr.astype(np.int64))
    products = []
    for p, key in enumerate(keys):
        if label_min[p] != label_max[p]:
            raise ValueError(f"product {key!r} has different true labels across its runs: [0, 1]")
        label = int(label_max[p])
        n_runs = int(run_counts[p])
        runs_rejected = int(round(rejected_counts[p]))
        runs_accepted = n_runs - runs_rejected
        need = required_runs(n_runs, k, n)
        if runs_rejected >= need:
            decision = "reject"
        elif runs_accepted >= need:
            decision = "accept"
        else:
            decision = "undecided"
        runs_correct = runs_rejected if label == 1 else runs_accepted
        products.append(
            {
                "product_id": key if isinstance(key, str | int) else str(key),
                "label": label,
                "n_runs": n_runs,
                "runs_rejected": runs_rejected,
                "runs_correct": runs_correct,
                "required_runs": need,
                "k_scaled": n_runs != n,
                "decision": decision,
                "correctly_classified": runs_correct >= need,
            }
        )
    good = [row for row in products if row["label"] == 0]
    defective = [row for row in products if row["label"] == 1]
    correct = sum(row["correctly_classified"] for row in products)
    good_ok = sum(row["correctly_classified"] for row in good)
    defect_ok = sum(row["correctly_classified"] for row in defective)
    summary = {
        "n_products": len(products),
        "n_good": len(good),
        "n_defective": len(defective),
        "correctly_classified": correct,
        "accuracy": correct / len(products) if products else None,
        "true_accept_rate": good_ok / len(good) if good else None,
        "true_reject_rate": defect_ok / len(defective) if defective else None,
        "undecided": sum(row["decision"] == "undecided" for row in products),
        "products_with_scaled_k": sum(row["k_scaled"] for row in products),
        "rule": f"correct when >= {k} of {n} runs give the true label; with m != {n} runs, ceil({k}*m/{n})",
    }
    return RunAcceptance(k=k, n=n, products=products, summary=summary)
