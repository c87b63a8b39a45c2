"""The filter stage of prepare_corpus: what the scan pass and the re-read call.

``FilterStage`` is the picklable, frozen description of the stage (a recipe,
language selection, PII redaction, sampling by fraction, language recording)
that ``transforms.processing.refs.ScanSpec.filters`` carries to the workers.
The scan calls ``setup()`` once per DoFn instance and ``decide_block([(id, text),
...])`` per block of documents (the same decisions as ``decide(id, text)`` per
document; ``transforms.reduction.filters.scan.ScanFilters``: sampling, then the
recipe's filters in order, first drop wins, then PII redaction and language of
kept documents); the re-read of pass 2 calls ``redact(text)`` for refs flagged
``redacted`` (the same deterministic function on the same text, so the stored
text is the text whose key and MinHash the dedup used).

Counters (Beam, namespace ``dataprep.filters``; the run report shows them as
``filters/<name>/kept`` and ``filters/<name>/dropped.<rule>``): every recipe
filter, ``sample/...`` and ``pii/<KIND>`` (replacements made).

``build_recipe(recipe, languages, threshold)`` folds ``--languages`` into a
recipe: the recipe's ``language`` step gets those languages (and threshold),
or a ``language`` step is put first when it has none.
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from transforms.reduction.filters.langid import LanguageConfig
from transforms.reduction.filters.pii import PiiConfig, redact_pii
from transforms.reduction.filters.recipes import Recipe, RecipeError, Step, load_recipe
from transforms.reduction.filters.sampling import DEFAULT_SEED, sample_threshold


def build_recipe(recipe, languages: Tuple[str, ...] = (), threshold: Optional[float] = None
                 ) -> Optional[Recipe]:
    """``recipe`` (a ``Recipe``, a shipped name, a path or None) with ``languages``
    folded in; None when there is nothing to filter.

    ``threshold`` (None: the recipe's, else ``LanguageConfig``'s default)
    applies to the language step.  Raises ``RecipeError``/``FilterConfigError``
    (``ValueError``s with one line naming the file or parameter).
    """
    if isinstance(recipe, str):
        recipe = load_recipe(recipe)
    if not languages and threshold is None:
        return recipe
    steps = list(recipe.steps) if recipe is not None else []
    index = next((i for i, s in enumerate(steps) if s.key == "language"), None)
    if index is None:
        config = LanguageConfig(languages=tuple(languages),
                                **({} if threshold is None else {"threshold": threshold}))
        steps.insert(0, Step("language", "language", config))
    else:
        old = steps[index].config
        config = dataclasses.replace(
            old, languages=tuple(languages) if languages else old.languages,
            threshold=old.threshold if threshold is None else threshold)
        steps[index] = steps[index]._replace(config=config)
    if recipe is None:
        return Recipe("languages", "--languages " + ",".join(languages), "(flags)", tuple(steps))
    return recipe._replace(steps=tuple(steps))


def _source(recipe) -> Optional[str]:
    """Where a recipe came from, without this machine's install path for a
    shipped one (``"shipped:web"``), so the manifest is the same everywhere."""
    if recipe is None:
        return None
    import os
    from transforms.reduction.filters.recipes import RECIPES_DIR
    if os.path.dirname(os.path.abspath(recipe.source)) == RECIPES_DIR:
        return "shipped:" + os.path.splitext(os.path.basename(recipe.source))[0]
    return recipe.source


@dataclass(frozen=True)
class FilterStage:
    """What the scan decides per document, and how pass 2 repeats the redaction.

    ``recipe``: a ``Recipe`` or None (no quality/language filters);
    ``redact_pii``: replace e-mail addresses, IPs, phones, card numbers and
    IBANs by typed placeholders (``transforms.reduction.filters.pii``) in kept
    documents; ``sample_fraction``/``sample_seed``: keep a document when the
    seeded xxh3-64 of its id is below ``fraction * 2**64`` (None keeps all);
    ``record_language``: detect the language of kept documents and write
    ``metadata.lang`` / ``metadata.lang_score`` into the stored record;
    ``detect_language``: detect it without recording (for ``--partition_by lang``).

    Raises ``FilterConfigError`` for a fraction outside [0, 1].
    """
    recipe: Optional[Recipe] = None
    redact_pii: bool = False
    sample_fraction: Optional[float] = None
    sample_seed: int = DEFAULT_SEED
    record_language: bool = False
    detect_language: bool = False

    def __post_init__(self):
        if self.sample_fraction is not None:
            sample_threshold(self.sample_fraction)  # validates
        if self.recipe is not None and not isinstance(self.recipe, Recipe):
            raise RecipeError(f"FilterStage.recipe must be a Recipe, got {self.recipe!r}")

    @property
    def active(self) -> bool:
        """Does the stage do anything (else the scan skips it)?"""
        return bool(self.recipe or self.redact_pii or self.sample_fraction is not None
                    or self.record_language or self.detect_language)

    @property
    def languages(self) -> bool:
        """Are language and score computed for every kept document?"""
        return self.record_language or self.detect_language

    def resolved(self) -> dict:
        """The stage as plain JSON for the manifest and run report: the recipe with
        every parameter, and the other settings."""
        return {"recipe": self.recipe.resolved if self.recipe is not None else None,
                "recipe_source": _source(self.recipe),
                "redact_pii": self.redact_pii,
                "pii_kinds": list(PiiConfig().kinds) if self.redact_pii else [],
                "sample_fraction": self.sample_fraction,
                "sample_seed": self.sample_seed if self.sample_fraction is not None else None,
                "record_language": self.record_language}

    def setup(self, counter_inc_fn=None) -> None:
        """Build the filters (once per worker DoFn); counters default to Beam's."""
        from transforms.reduction.filters.scan import ScanFilters
        if counter_inc_fn is None:
            from transforms.reduction.filters.beam import BeamCounters
            counter_inc_fn = BeamCounters()
        object.__setattr__(self, "_scan", ScanFilters(
            recipe=self.recipe, pii=PiiConfig() if self.redact_pii else None,
            sample_fraction=self.sample_fraction, sample_seed=self.sample_seed,
            record_language=self.languages, counter_inc_fn=counter_inc_fn))

    def __getstate__(self):  # the built filters stay on the worker that built them
        return {k: v for k, v in self.__dict__.items() if k != "_scan"}

    def decide(self, doc_id: str, text: str):
        """``transforms.reduction.filters.scan.Decision`` for one document (after ``setup``)."""
        return self._scan(doc_id, text)

    def decide_block(self, docs):
        """``[self.decide(doc_id, text) for doc_id, text in docs]`` (the same decisions and
        counters), the block judged at once (``ScanFilters.block``)."""
        return self._scan.block(docs)

    def redact(self, text: str) -> str:
        """The redacted text (no counters): what ``decide`` returned as ``text``."""
        return redact_pii(text, PiiConfig()).text
