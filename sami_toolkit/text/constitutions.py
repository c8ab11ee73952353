"""From a principle set to constitutions: enumeration, contrastive pair strategies and principle shuffling.

A *constitution* picks one variant (definition or antithesis) of each of some principles and lists them as a
numbered list (spec §5.2, §6).  SAMI contrasts ``C`` constitutions per query; how they are chosen matters and the
paper's Algorithm 1 differs from its code (spec §5.3, §10.3), so the choice is an explicit *strategy* here:

``positive_vs_negative``
    The all-definition constitution first, then ``C-1`` distinct non-positive variants drawn uniformly
    (Exp. 1–2: the code pairs the positive with one of the three non-positive constitutions).
``complement`` (alias ``complement_random_flip``)
    Draw ``k`` (default 2) distinct principles, a random variant of each, then its exact complement (Exp. 3).
    For ``C > 2`` further *distinct* random variants of the same ``k`` principles are appended (an extension:
    the paper always uses ``C = 2``).
``iid``
    ``C`` independent uniform draws from the ``2^k`` space (Algorithm 1).  Draws may repeat; ``C > 2^k`` is
    rejected because it would guarantee repeats.

All randomness comes from the ``random.Random`` the caller passes (and seeds, and records), so a run is
reproducible.  The principle order *within* a constitution is shuffled at prompt-building time (spec §2.8), not
here: :meth:`Constitution.shuffled` for a structured constitution, :func:`shuffle_constitution` for one that only
exists as rendered text.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.text.principles import PrincipleSet

Strategy = Literal["positive_vs_negative", "complement", "iid"]
STRATEGIES: tuple[str, ...] = ("positive_vs_negative", "complement", "iid")
#: alternative spellings accepted for a strategy (spec §10.1 calls the Exp. 3 one ``complement_random_flip``)
STRATEGY_ALIASES: dict[str, str] = {"complement_random_flip": "complement", "positive-vs-negative":
                                    "positive_vs_negative", "algorithm1": "iid"}
#: above this many principles, :func:`all_constitutions` refuses to enumerate (2^k grows fast: 20 -> 1,048,576)
MAX_ENUMERATED_PRINCIPLES = 12

_NUMBERED_LINE = re.compile(r"^\s*(\d+)\s*[.)]\s*(.*)$")


@dataclass(frozen=True)
class Constitution:
    """One constitution: ``(principle name, True = definition / False = antithesis)`` pairs, in order."""

    items: tuple[tuple[str, bool], ...]

    # ----------------------------------------------------------------------------------------- views
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.items)

    @property
    def is_positive(self) -> bool:
        """True when every principle is its definition (the constitution used for win rates, spec §5.3)."""
        return all(positive for _, positive in self.items)

    def texts(self, pset: "PrincipleSet") -> list[str]:
        """The principle texts in order: each principle's definition or antithesis."""
        out = []
        for name, positive in self.items:
            principle = pset.get(name)
            out.append(principle.definition if positive else principle.antithesis)
        return out

    def render(self, pset: "PrincipleSet") -> str:
        """The numbered list ``"1. <text>\\n2. <text>"`` that fills a prompt's ``{constitution}`` slot (spec §6)."""
        return render_numbered(self.texts(pset))

    def label(self) -> str:
        """Human-readable label as in the paper's tables, e.g. ``"concise, not comprehensive"``."""
        return ", ".join(name if positive else f"not {name}" for name, positive in self.items)

    def complement(self) -> "Constitution":
        """Every principle flipped (definition <-> antithesis), order kept (spec §5.3 Exp. 3)."""
        return Constitution(tuple((name, not positive) for name, positive in self.items))

    def shuffled(self, rng: random.Random) -> "Constitution":
        """The same principles and variants in a random order (spec §2.8), drawn from ``rng``.

        The same permutation as :func:`shuffle_constitution` draws for the rendered text (one ``rng.shuffle`` of
        a k-item list), so ``c.shuffled(rng).render(pset) == shuffle_constitution(c.render(pset), rng)`` for
        equally seeded generators, without parsing text back into principles."""
        items = list(self.items)
        rng.shuffle(items)
        return Constitution(tuple(items))

    # ------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; its ``items`` are stored in each ``samples.jsonl`` row (``SampleRow.items``), so a
        record says which variants it used."""
        return {"label": self.label(), "items": [[name, positive] for name, positive in self.items]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Constitution":
        return cls(tuple((str(name), bool(positive)) for name, positive in data["items"]))

    @classmethod
    def from_label(cls, label: str) -> "Constitution":
        """Inverse of :meth:`label`: ``"concise, not comprehensive"`` -> concise=definition, comprehensive=antithesis."""
        items = []
        for part in (p.strip() for p in label.split(",")):
            if not part:
                raise ConfigError(f"constitution label '{label}': empty principle name")
            items.append((part[4:].strip(), False) if part.startswith("not ") else (part, True))
        return cls(tuple(items))

    @classmethod
    def positive(cls, names: Sequence[str]) -> "Constitution":
        """The all-definition constitution over ``names``."""
        return cls(tuple((name, True) for name in names))


# ------------------------------------------------------------------------------------------------ text helpers
def render_numbered(texts: Sequence[str]) -> str:
    """``["a", "b"]`` -> ``"1. a\\n2. b"``, the constitution layout of the paper's code (spec §6)."""
    return "\n".join(f"{i}. {text.strip()}" for i, text in enumerate(texts, start=1))


def parse_numbered(text: str) -> list[str]:
    """Split a rendered constitution back into principle texts.

    Unlike the reference code, which drops exactly 3 characters per line and so breaks at 10+ principles
    (spec §2.8, §10.22), this reads the number with a regular expression (``"12. text"``, ``"3) text"``), joins
    unnumbered lines to the previous principle, ignores blank lines and trailing spaces (the ``" \\n"``
    separators of the reference files, spec §6.2), and treats text with no numbers at all as one principle per
    non-empty line.
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if not any(_NUMBERED_LINE.match(line) for line in lines):
        return lines
    items: list[str] = []
    for line in lines:
        match = _NUMBERED_LINE.match(line)
        if match:
            items.append(match.group(2).strip())
        elif items:
            items[-1] = f"{items[-1]} {line}".strip()
        else:  # text before the first number: keep it as its own item rather than losing it
            items.append(line)
    return items


def shuffle_constitution(text: str, rng: random.Random) -> str:
    """Shuffle the principle order of a rendered constitution and renumber it 1..k (spec §2.8).

    Applied independently to each training prompt, each evaluation prompt and the judge prompt, so the model
    cannot learn a position-specific reading of the constitution.  For text only; with the structured
    constitution at hand use :meth:`Constitution.shuffled` (the loop's training prompts do), which needs no parsing.
    """
    items = parse_numbered(text)
    rng.shuffle(items)
    return render_numbered(items)


# ------------------------------------------------------------------------------------------ enumeration
def _resolve_names(pset: "PrincipleSet", names: Sequence[str] | None, *, default_train: bool) -> list[str]:
    if names is None:
        if default_train and pset.train_principles:
            return list(pset.train_principles)
        return [p.name for p in pset.principles]
    names = list(names)
    for name in names:
        pset.get(name)  # ConfigError naming the set and its principles
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"principle names given more than once: {', '.join(dupes)}")
    if not names:
        raise ConfigError(f"no principles selected from principle set '{pset.name}'")
    return names


def _variant(names: Sequence[str], index: int) -> Constitution:
    """Variant number ``index`` in table order: bit j set = principle j negated (first principle flips fastest)."""
    return Constitution(tuple((name, not (index >> j) & 1) for j, name in enumerate(names)))


def all_constitutions(pset: "PrincipleSet", names: Sequence[str] | None = None) -> list[Constitution]:
    """All ``2^k`` constitutions over ``names`` (default: every principle, file order) in the order of the
    paper's Tables 10–12: all definitions first, the first principle flipping fastest, all antitheses last."""
    names = _resolve_names(pset, names, default_train=False)
    if len(names) > MAX_ENUMERATED_PRINCIPLES:
        raise ConfigError(
            f"principle set '{pset.name}': {len(names)} principles give {2 ** len(names):,} constitutions; "
            f"enumerating is limited to {MAX_ENUMERATED_PRINCIPLES} principles: select fewer principles "
            "(on the command line: --principles NAME,NAME)")
    return [_variant(names, i) for i in range(2 ** len(names))]


# ------------------------------------------------------------------------------------------- strategies
def normalize_strategy(strategy: str) -> str:
    """The canonical strategy name, or a ConfigError with a did-you-mean."""
    strategy = STRATEGY_ALIASES.get(strategy, strategy)
    if strategy not in STRATEGIES:
        close = difflib.get_close_matches(strategy, [*STRATEGIES, *STRATEGY_ALIASES], n=1, cutoff=0.5)
        hint = f" Did you mean '{STRATEGY_ALIASES.get(close[0], close[0])}'?" if close else ""
        raise ConfigError(f"unknown constitution pair strategy '{strategy}'.{hint} "
                          f"Choose one of: {', '.join(STRATEGIES)}")
    return strategy


def _random_variant(names: Sequence[str], rng: random.Random) -> Constitution:
    return Constitution(tuple((name, rng.random() < 0.5) for name in names))


def _distinct_random_variants(names: Sequence[str], count: int, rng: random.Random,
                              exclude: set[Constitution]) -> list[Constitution]:
    """``count`` distinct uniform variants not in ``exclude`` (caller checks that enough exist)."""
    space = 2 ** len(names)
    if len(names) <= MAX_ENUMERATED_PRINCIPLES:
        pool = [c for c in (_variant(names, i) for i in range(space)) if c not in exclude]
        return rng.sample(pool, count)
    chosen: list[Constitution] = []
    seen = set(exclude)
    while len(chosen) < count:  # the space is huge here, so rejection almost never loops
        candidate = _random_variant(names, rng)
        if candidate not in seen:
            seen.add(candidate)
            chosen.append(candidate)
    return chosen


def sample_constitutions(pset: "PrincipleSet", strategy: Strategy | str, n: int, rng: random.Random,
                         names: Sequence[str] | None = None, k: int | None = None,
                         always_negate: Sequence[str] = ()) -> list[Constitution]:
    """The ``n`` (= C) constitutions contrasted for one query (spec §5.3); call once per query.

    ``names`` restricts the principles (default: the set's ``train_principles``, else all).  ``k`` is how many
    of them each query uses: for ``complement`` it defaults to 2 (Exp. 3 draws 2 of the 15 training
    principles); for the other strategies it defaults to all of ``names``, and a smaller ``k`` first draws ``k``
    distinct principles at random.  The principles keep the order in which they were drawn.

    ``always_negate`` (``positive_vs_negative`` only): principles every negative constitution negates.  The HH code
    (spec §5.3) pairs a helpful-base query's positive with *harmless + not helpful* or *not harmless + not
    helpful*: the subset's own principle is always negated.
    """
    strategy = normalize_strategy(strategy)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"the number of constitutions per query (C) must be an integer >= 2, got {n!r}: "
                          "SAMI contrasts several constitutions per query (spec §2.2)")
    pool = _resolve_names(pset, names, default_train=True)
    if always_negate:
        return _negating_pairs(pset, pool, n, rng, list(always_negate), strategy, k)
    if k is None:
        k = min(2, len(pool)) if strategy == "complement" else len(pool)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(pool):
        raise ConfigError(f"k (principles per constitution) must be between 1 and {len(pool)} "
                          f"(the selected principles of '{pset.name}'), got {k!r}")
    chosen = pool if k == len(pool) else rng.sample(pool, k)
    space = 2 ** k

    if strategy == "positive_vs_negative":
        if n > space:
            raise ConfigError(f"strategy positive_vs_negative needs {n} distinct constitutions but {k} principles "
                              f"give only {space}; lower C or use more principles")
        positive = Constitution.positive(chosen)
        return [positive, *_distinct_random_variants(chosen, n - 1, rng, {positive})]
    if strategy == "complement":
        if n > space:
            raise ConfigError(f"strategy complement needs {n} distinct constitutions but k={k} principles "
                              f"give only {space}; lower C or raise k")
        first = _random_variant(chosen, rng)
        result = [first, first.complement()]
        if n > 2:
            result += _distinct_random_variants(chosen, n - 2, rng, set(result))
        return result
    # iid (Algorithm 1)
    if n > space:
        raise ConfigError(f"strategy iid: C={n} exceeds the {space} constitutions that {k} principles give; "
                          "lower C or use more principles")
    return [_random_variant(chosen, rng) for _ in range(n)]


def _negating_pairs(pset: "PrincipleSet", pool: list[str], n: int, rng: random.Random, negate: list[str],
                    strategy: str, k: int | None) -> list[Constitution]:
    """``positive_vs_negative`` where every negative negates ``negate`` (spec §5.3, HH): the all-positive
    constitution over ``pool`` (in that order: the generation prompt lists principles as given), then ``n - 1``
    distinct variants with ``negate`` flipped and the other principles drawn uniformly."""
    if strategy != "positive_vs_negative":
        raise ConfigError(f"always-negated principles ({', '.join(negate)}) need strategy positive_vs_negative, "
                          f"not {strategy} (the HH code's rule, spec §5.3)")
    if k is not None and k != len(pool):
        raise ConfigError("always-negated principles use every selected principle: drop constitutions.k")
    for name in negate:
        pset.get(name)
        if name not in pool:
            raise ConfigError(f"always-negated principle '{name}' is not among the selected principles "
                              f"({', '.join(pool)})")
    free = [name for name in pool if name not in negate]
    space = 2 ** len(free)
    if n - 1 > space:
        raise ConfigError(f"{n - 1} negative constitutions with {', '.join(negate)} always negated need "
                          f"{n - 1} distinct variants but only {space} exist; lower C")
    variants = [_variant(free, i) for i in range(space)] if free else [Constitution(())]
    picked = rng.sample(variants, n - 1)
    negatives = []
    for variant in picked:
        chosen = dict(variant.items)
        negatives.append(Constitution(tuple((name, False if name in negate else chosen[name]) for name in pool)))
    return [Constitution.positive(pool), *negatives]


def sampled_eval_constitution(pset: "PrincipleSet", names: Sequence[str], rng: random.Random,
                              k: int = 2) -> Constitution:
    """One evaluation constitution of Exp. 3 (spec §5.3, §8.1): ``k`` distinct principles drawn from ``names``
    (the train-15 for in-distribution, the held-out-5 for OOD), each randomly as its definition or antithesis,
    so it may contain antitheses ("Summaries should use only text.")."""
    return sample_constitutions(pset, "complement", 2, rng, names, k)[0]


def eval_constitution_rng(seed: int, split: str, query_id: str) -> random.Random:
    """The generator that draws query ``query_id``'s evaluation constitution for principle split ``split``: seeded
    by the three alone, so every iteration, the base model and both evaluators (win rate and MI) see the same
    constitution for an item (the paper drew them once with ``random.seed(42)``, spec §5.3)."""
    return random.Random(f"{seed}:eval-constitution:{split}:{query_id}")


def principle_split(pset: "PrincipleSet", split: str) -> list[str]:
    """The principle names of ``split``: ``id`` = the set's ``train_principles`` (in-distribution, spec §6.4),
    ``ood`` = its ``held_out_principles``, ``all`` = every principle; a ConfigError when the set has no such split."""
    if split == "all":
        return [p.name for p in pset.principles]
    if split == "id":
        if pset.train_principles:
            return list(pset.train_principles)
        held = set(pset.held_out_principles or [])
        return [p.name for p in pset.principles if p.name not in held]
    if split == "ood":
        if not pset.held_out_principles:
            raise ConfigError(f"principle set '{pset.name}' has no held_out_principles, so there is nothing to "
                              "evaluate out of distribution (spec §6.4)",
                              hint="use a set with held_out_principles (tldr-diverse) or principles: id")
        return list(pset.held_out_principles)
    raise ConfigError(f"unknown principle split '{split}'; choose id, ood or all")
