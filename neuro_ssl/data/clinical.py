"""Clinical data as model input: numbers standardized, categories one-hot, free text as TF-IDF, every gap flagged.

``ClinicalFeaturizer(columns, text=None).fit(train_frame)`` learns from the training rows only:

- a numeric column (every present value parses as a number, e.g. MMSE, CDRSB, APOE4): its mean
  and population standard deviation (1 when constant), ``mean_`` and ``sd_``;
- a categorical column (any other, e.g. PTGENDER): its sorted distinct values, ``categories_``;
- the ``text`` column (a report): scikit-learn's ``TfidfVectorizer`` vocabulary and idf, at most
  ``max_text_features`` terms that occur in at least 2 training rows (no download, no language model).

``transform(frame)`` gives :class:`ClinicalFeatures`: ``values`` (N, P) float32 and ``missing``
(N, G) bool, one group per column in the order given, the text last. A numeric group is 1 wide
(``(x - mean) / sd``), a categorical one has one slot per category, the text one per term.
A missing value (empty, NaN) sets its group's bit and leaves zeros in its slots; a category not
seen in training counts as missing too (``unseen`` counts them). No row is ever dropped and no
value is NaN: the encoder replaces a missing group by a learned fill (``models.ClinicalEncoder``).

``to_dict()`` / ``from_dict()`` carry the fitted state as plain data (lists, str, float), so a
run keeps it in its checkpoint (``weights_only`` loading) and featurizes any later manifest the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from neuro_ssl.errors import ManifestError, row_context

FORMAT = "neuro-ssl-clinical-features/1"
MAX_TEXT_FEATURES = 1024


@dataclass
class ClinicalFeatures:
    """``values`` (N, P) float32 (zeros where missing), ``missing`` (N, G) bool, manifest ``rows`` (N,)."""

    values: np.ndarray
    missing: np.ndarray
    rows: list
    missing_counts: dict[str, int] = field(default_factory=dict)  # per column, unseen categories included
    unseen: dict[str, int] = field(default_factory=dict)


def _absent(raw: pd.Series) -> np.ndarray:
    text = raw.astype("string").str.strip()
    return (raw.isna() | text.isna() | (text == "")).to_numpy(dtype=bool)


class ClinicalFeaturizer:
    """Fitted featurization of clinical columns (see the module docstring)."""

    def __init__(self, columns: Sequence[str] = (), text: str | None = None,
                 max_text_features: int = MAX_TEXT_FEATURES):
        self.columns = [str(c) for c in columns]
        self.text = str(text) if text else None
        self.max_text_features = int(max_text_features)
        if not self.columns and not self.text:
            raise ValueError("a clinical featurizer needs at least one column or a text column")
        self.kinds_: dict[str, str] = {}
        self.mean_: dict[str, float] = {}
        self.sd_: dict[str, float] = {}
        self.categories_: dict[str, list[str]] = {}
        self.vocabulary_: dict[str, int] = {}
        self.idf_: list[float] = []
        self.fitted_ = False

    # ---- fitting ----------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "ClinicalFeaturizer":
        """Learn statistics, categories and vocabulary from the training rows of ``frame``."""
        source = frame.attrs.get("source", "manifest")
        self._require(frame, source)
        for column in self.columns:
            raw = frame[column]
            present = ~_absent(raw)
            if not present.any():
                raise ManifestError(f"{source}: clinical column {column} has no value in any training row")
            numbers = pd.to_numeric(raw[present], errors="coerce")
            if numbers.notna().all():
                values = numbers.to_numpy(dtype=np.float64)
                sd = float(values.std())
                self.kinds_[column] = "numeric"
                self.mean_[column], self.sd_[column] = float(values.mean()), (sd if sd > 0 else 1.0)
            else:
                self.kinds_[column] = "categorical"
                self.categories_[column] = sorted({str(v).strip() for v in raw[present]})
        if self.text:
            self._fit_text(frame, source)
        self.fitted_ = True
        return self

    def _fit_text(self, frame: pd.DataFrame, source) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        raw = frame[self.text]
        documents = raw[~_absent(raw)].astype(str).tolist()
        vectorizer = TfidfVectorizer(max_features=self.max_text_features, min_df=2, dtype=np.float32)
        try:
            vectorizer.fit(documents)
        except ValueError:
            raise ManifestError(f"{source}: --text {self.text}: no word occurs in at least 2 training rows "
                                f"({len(documents)} row(s) have text)") from None
        self.vocabulary_ = {str(term): int(i) for term, i in vectorizer.vocabulary_.items()}
        self.idf_ = [float(v) for v in vectorizer.idf_]

    def _require(self, frame: pd.DataFrame, source) -> None:
        wanted = self.columns + ([self.text] if self.text else [])
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            shown = ", ".join(map(str, frame.columns[:15]))
            raise ManifestError(f"{source}: no clinical column {missing[0]} (columns: {shown})")

    # ---- layout -----------------------------------------------------------------------------
    @property
    def group_names(self) -> list[str]:
        return self.columns + ([self.text] if self.text else [])

    @property
    def group_widths(self) -> list[int]:
        """Slots per group: 1 per numeric column, one per category, one per text term."""
        if not self.fitted_:
            raise RuntimeError("call fit() before using the featurizer")
        widths = [1 if self.kinds_[c] == "numeric" else len(self.categories_[c]) for c in self.columns]
        return widths + ([len(self.idf_)] if self.text else [])

    # ---- transform --------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> ClinicalFeatures:
        """Features of every row of ``frame`` (none dropped); ManifestError for a non-number in a numeric column."""
        source = frame.attrs.get("source", "manifest")
        self._require(frame, source)
        widths = self.group_widths
        values = np.zeros((len(frame), sum(widths)), dtype=np.float32)
        missing = np.zeros((len(frame), len(widths)), dtype=bool)
        counts, unseen = {}, {}
        start = 0
        for g, column in enumerate(self.columns):
            absent = _absent(frame[column])
            if self.kinds_[column] == "numeric":
                numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
                bad = np.isnan(numbers) & ~absent | np.isinf(numbers)
                if bad.any():
                    row = frame.index[int(np.argmax(bad))]
                    raise ManifestError(f"{row_context(source, row)}: clinical column {column} value "
                                        f"{frame.at[row, column]!r} is not a number")
                values[~absent, start] = (numbers[~absent] - self.mean_[column]) / self.sd_[column]
            else:
                codes = {name: k for k, name in enumerate(self.categories_[column])}
                found = np.array([-1 if a else codes.get(str(v).strip(), -1) for v, a in zip(frame[column], absent)])
                unseen[column] = int(((found < 0) & ~absent).sum())
                absent = found < 0
                values[np.flatnonzero(~absent), start + found[~absent]] = 1.0
            missing[:, g], counts[column] = absent, int(absent.sum())
            start += widths[g]
        if self.text:
            absent = _absent(frame[self.text])
            if (~absent).any():
                texts = frame[self.text][~absent].astype(str).tolist()
                values[~absent, start:] = self._vectorizer().transform(texts).toarray()
            missing[:, -1], counts[self.text] = absent, int(absent.sum())
        return ClinicalFeatures(values, missing, list(frame.index), counts, unseen)

    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(vocabulary=self.vocabulary_, dtype=np.float32)
        vectorizer.idf_ = np.asarray(self.idf_, dtype=np.float64)
        return vectorizer

    # ---- profiles ---------------------------------------------------------------------------
    def profile(self, features: ClinicalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """One ``(values (P,), missing (G,))`` summarising rows: per group the median of a number,
        the most frequent category, the mean TF-IDF of the rows with text; missing if no row has it."""
        values = np.zeros(features.values.shape[1], dtype=np.float32)
        missing = np.zeros(features.missing.shape[1], dtype=bool)
        start = 0
        for g, (name, width) in enumerate(zip(self.group_names, self.group_widths)):
            present = ~features.missing[:, g]
            block = features.values[present, start:start + width]
            if not present.any():
                missing[g] = True
            elif name == self.text:
                values[start:start + width] = block.mean(axis=0)
            elif self.kinds_[name] == "numeric":
                values[start] = np.median(block[:, 0])
            else:
                values[start + int(np.argmax(block.sum(axis=0)))] = 1.0
            start += width
        return values, missing

    # ---- state ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fitted state as plain data (saved with the run)."""
        return {"format": FORMAT, "columns": list(self.columns), "text": self.text,
                "max_text_features": self.max_text_features, "kinds": dict(self.kinds_),
                "mean": dict(self.mean_), "sd": dict(self.sd_),
                "categories": {k: list(v) for k, v in self.categories_.items()},
                "vocabulary": dict(self.vocabulary_), "idf": list(self.idf_)}

    @classmethod
    def from_dict(cls, state: dict) -> "ClinicalFeaturizer":
        """Inverse of :meth:`to_dict`; ValueError for anything else."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not a fitted clinical featurization (expected format {FORMAT})")
        out = cls(state["columns"], state.get("text"), int(state.get("max_text_features", MAX_TEXT_FEATURES)))
        out.kinds_ = {str(k): str(v) for k, v in state["kinds"].items()}
        out.mean_ = {str(k): float(v) for k, v in state["mean"].items()}
        out.sd_ = {str(k): float(v) for k, v in state["sd"].items()}
        out.categories_ = {str(k): [str(c) for c in v] for k, v in state["categories"].items()}
        out.vocabulary_ = {str(k): int(v) for k, v in state["vocabulary"].items()}
        out.idf_ = [float(v) for v in state["idf"]]
        out.fitted_ = True
        return out
