"""Test helpers for sami-kit and its plugin authors (registered as a pytest plugin through ``pytest11``).

Fakes (no model, no network):

* :class:`ConstantJudge` (``constant``): always returns the configured verdict;
* :class:`EchoSampler` (``echo``): returns the end of each prompt, optionally with a prefix;
* :class:`FixedPrincipleWriter` (``fixed``): writes deterministic definitions/antitheses.

Fixtures (nothing global: each test gets its own plugin system and registry):

* ``sami_kit_registry`` is a :class:`~sami_toolkit.plugins.registry.Registry` over a plugin system owned by the
  test; pass it to whatever builds components (``registry.create``, ``run_sami``, ``run_compare``, the CLI);
* ``sami_kit_fakes`` registers the fakes on it;
* ``sami_kit_register_plugin`` registers any plugin object (module, class or instance with hookimpls) on it;
* ``sami_kit_register_component`` registers component classes (a judge, a sampler...) on it without a plugin
  class: each goes to the ``register_<kind>`` hook of its kind;
* ``sami_kit_cli`` invokes the CLI in-process with it (click's ``CliRunner``);
* ``tiny_model_dir`` is a session-scoped directory holding a random-weight Llama-style model (hidden size 32) and a
  byte-level BPE tokenizer trained on the spot, so tests never download anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import pytest
from pydantic import Field

from sami_toolkit.core.components import (
    ComponentOptions,
    Judge,
    PrincipleWriter,
    Sampler,
)
from sami_toolkit.core.hookspecs import hookimpl
from sami_toolkit.core.records import JudgeItem, Judgment, WriterResult

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sami_toolkit.plugins.registry import Registry


class ConstantJudge(Judge):
    """A judge that always gives the same verdict (for tests)."""

    name = "constant"

    class Options(ComponentOptions):
        verdict: Literal["A", "B", "tie", "failed"] = Field("A", description="The verdict returned for every item.")
        model: str = Field("constant-judge", description="Model name reported for the judge.")

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        out = []
        for item in items:
            error = "constant judge configured to fail" if self.options.verdict == "failed" else None
            out.append(Judgment(id=item.id, verdict=self.options.verdict,
                                raw=f"Comparison: constant.\nFinal Response: {self.options.verdict}", error=error))
            if progress is not None:
                progress(1)
        return out


class EchoSampler(Sampler):
    """A sampler that echoes the end of each prompt (for tests)."""

    name = "echo"

    class Options(ComponentOptions):
        prefix: str = Field("", description="Text put before every echoed response.")
        max_chars: int = Field(40, ge=1, description="How many trailing prompt characters to echo.")

    def generate(self, model: str, prompts: Sequence[str], *, progress: Any = None) -> list[str]:
        out = [self.options.prefix + p[-self.options.max_chars:] for p in prompts]
        if progress is not None:
            progress(len(out))
        return out


class FixedPrincipleWriter(PrincipleWriter):
    """A principle writer that returns fixed template text (for tests)."""

    name = "fixed"

    class Options(ComponentOptions):
        definition: str = Field("Responses should be {name}.", description="Definition template ({name}).")
        antithesis: str = Field("Responses should not be {name}.", description="Antithesis template ({name}).")

    def write(self, task: str, principles: Sequence[str]) -> WriterResult:
        from sami_toolkit.text.principles import Principle, PrincipleSet

        items = [Principle(name=n, definition=self.options.definition.format(name=n),
                           antithesis=self.options.antithesis.format(name=n)) for n in principles]
        raw = "\n".join(f"{i}. {p.name}: {p.definition}" for i, p in enumerate(items, 1))
        return WriterResult(PrincipleSet(name="fixed", task=task, writer="fixed", principles=items), raw=raw)


class FakesPlugin:
    """A plugin registering the three fakes."""

    @hookimpl
    def register_judges(self, register: Any) -> None:
        register(ConstantJudge)

    @hookimpl
    def register_samplers(self, register: Any) -> None:
        register(EchoSampler)

    @hookimpl
    def register_principle_writers(self, register: Any) -> None:
        register(FixedPrincipleWriter)


@pytest.fixture
def sami_kit_registry() -> "Registry":
    """A component registry over a plugin system owned by this test: the built-ins and the installed plugins, plus
    whatever the test registers on it (``sami_kit_register_plugin``, ``sami_kit_fakes``).

    Pass it on explicitly: ``sami_kit_registry.create(kind, name, options)``, ``run_sami(config,
    registry=sami_kit_registry)``, ``main(args, registry=sami_kit_registry)`` or ``CliRunner().invoke(cli, args,
    obj=sami_kit_registry)``.  Nothing is global, so nothing leaks into the next test."""
    from sami_toolkit.plugins.registry import load_plugins

    return load_plugins()


@pytest.fixture
def sami_kit_register_plugin(sami_kit_registry: "Registry") -> Callable[[object, str], None]:
    """Register plugin objects on this test's ``sami_kit_registry``: ``sami_kit_register_plugin(obj, "name")``."""

    def _register(plugin: object, name: str) -> None:
        sami_kit_registry.system.register_plugin(plugin, name, source="test")

    return _register


@pytest.fixture
def sami_kit_register_component(sami_kit_register_plugin: Callable[[object, str], None]) -> Callable[..., None]:
    """Register component classes on this test's ``sami_kit_registry``: ``sami_kit_register_component(MyJudge,
    MySampler)``. Each class goes to the hook of its ``kind`` (``register_judges``, ``register_query_sources``...),
    as if a plugin had registered it — the shortcut for a test that needs one scripted component."""

    def _register(*classes: type) -> None:
        for cls in classes:
            hook_name = "register_" + str(getattr(cls, "kind")).replace("-", "_")

            def hook(register: Any, _cls: type = cls) -> None:
                register(_cls)

            hook.__name__ = hook_name
            plugin = type(f"{cls.__name__}Plugin", (), {hook_name: staticmethod(hookimpl(hook))})
            sami_kit_register_plugin(plugin, f"test-component:{cls.kind}:{cls.name}")

    return _register


@pytest.fixture
def sami_kit_fakes(sami_kit_register_plugin: Callable[[object, str], None]) -> FakesPlugin:
    """Make the ``constant`` judge, ``echo`` sampler and ``fixed`` principle writer available in this test's
    ``sami_kit_registry``."""
    plugin = FakesPlugin()
    sami_kit_register_plugin(plugin, "sami-kit-fakes")
    return plugin


@pytest.fixture
def sami_kit_cli(sami_kit_registry: "Registry") -> Callable[..., Any]:
    """Invoke the ``sami-kit`` CLI in-process with this test's registry: ``result = sami_kit_cli(["judges",
    "list"])`` returns click's ``Result`` (``exit_code``, ``stdout``, ``stderr``, ``output``)."""
    from click.testing import CliRunner

    from sami_toolkit.cli import cli

    def _invoke(args: Sequence[str], **kwargs: Any) -> Any:
        return CliRunner().invoke(cli, list(args), obj=sami_kit_registry, **kwargs)

    return _invoke


# ---------------------------------------------------------------------------------------------- tiny model
TINY_CORPUS = (
    "Summarize the post below according to the principles in the constitution. Summary: The post "
    "Human: Assistant: Write a response for the assistant that follows the principles. POST: "
    "Summaries should be brief and to the point, avoiding unnecessary details. Summaries should be thorough "
    "and include all important information from the original post. The cat sat on the mat. I have a question "
    "about my landlord, my job, my friend and my dog. 1. 2. 3. helpful harmless concise comprehensive "
)


def build_tiny_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer trained on a tiny corpus; adds a BOS like Llama/Mistral tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TINY_CORPUS] * 20, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")


def make_tiny_model_dir(path: str | Path, *, arch: Literal["llama", "mistral", "qwen2"] = "llama", seed: int = 0,
                        hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a random-weight causal LM (hidden size ≤ 64) and its tokenizer to ``path``; returns ``path``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    tokenizer = build_tiny_tokenizer()
    config = AutoConfig.for_model(
        arch, vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama-style model directory with its tokenizer (built once per test session)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))
