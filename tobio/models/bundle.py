"""A model bundle: provider + model name + purpose + parameters, with the calls each purpose needs."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, create_model

from tobio.config.schema import ModelSpec
from tobio.models.jsonfix import JSONRepairError, repair_prompt, validate_text
from tobio.providers.base import Provider

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.models.runs import Run

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class _Choice(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built by `classify`'s subclass, never validated itself

    label: str  # narrowed to the labels by `classify`


class Model:
    """A named bundle bound to a provider. Agents name bundles (`model: chat-default`)."""

    def __init__(self, kernel: Kernel, name: str, spec: ModelSpec, provider: Provider | Mapping[str, Provider]) -> None:
        """`provider` is the provider itself, or the registry's providers, where `spec.provider` is looked up
        on each use: that builds it from its type the first time, after whichever module adds the type."""
        self.kernel = kernel
        self.name = name
        self.spec = spec
        self._provider = provider

    @property
    def provider(self) -> Provider:
        found = self._provider
        return found if isinstance(found, Provider) else found[self.spec.provider]

    @property
    def provider_model(self) -> str:
        return str(self.spec.path) if self.spec.path else self.spec.model

    def run(self, messages: list[dict[str, Any]], **kwargs: Any) -> Run:
        """A queued run on this model (see tobio.models.runs.Run): iterate `run.deltas()` or `await run.wait()`."""
        from tobio.models.module import runs_of  # the module imports this file

        return runs_of(self.kernel).create(self, messages, **kwargs)

    def prefill(self, messages: list[dict[str, Any]], **kwargs: Any) -> Run | None:
        """Have the provider read `messages` ahead into its cache, so the next request that starts with them
        evaluates only what follows (recorded as a run of purpose "prefill"). None when the provider keeps
        no cache of its own to fill (a server's prefix cache fills itself on the next request)."""
        if not self.provider.supports_prefill:
            return None
        return self.run(messages, prefill=True, **kwargs)

    async def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        """The whole reply text."""
        return (await self.run(messages, **kwargs).wait()).text

    async def complete(self, prompt: str, system: str | None = None, **kwargs: Any) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return await self.chat(messages, **kwargs)

    async def json(
        self, prompt: str | list[dict[str, Any]], schema: type[M], *, tries: int = 3, fixer: Model | None = None, **kwargs: Any
    ) -> M:
        """A validated `schema` object: constrained decoding where possible, else parse → repair → error."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        constrained = self.provider.supports_json_schema
        json_schema = schema.model_json_schema() if constrained else None
        if not constrained:
            messages = messages[:-1] + [{
                **messages[-1],
                "content": f"{messages[-1]['content']}\n\nReply with JSON matching this schema:\n{json.dumps(schema.model_json_schema())}",
            }]
        text = await self.chat(messages, json_schema=json_schema, **kwargs)
        raw = [text]
        value, problem = validate_text(text, schema)
        from tobio.models.module import models_of

        fixer = fixer or models_of(self.kernel).get_for("json", default=self)
        for attempt in range(tries):
            if value is not None:
                return value
            log.info("model %s: JSON did not validate (%s); repair %d/%d with %s", self.name, problem, attempt + 1, tries, fixer.name)
            fixed_schema = schema.model_json_schema() if fixer.provider.supports_json_schema else None
            text = await fixer.chat(repair_prompt(text, problem, schema), json_schema=fixed_schema)
            raw.append(text)
            value, problem = validate_text(text, schema)
        if value is not None:
            return value
        raise JSONRepairError(
            f"model {self.name} gave no valid {schema.__name__} after {tries} repairs ({problem}); raw text kept", raw
        )

    async def classify(self, text: str, labels: list[str], *, instruction: str = "Classify the text.", **kwargs: Any) -> str:
        """One of `labels` for `text` (constrained to the labels where the provider can)."""
        label: Any = Literal[tuple(labels)]  # a type built from run-time values: mypy cannot see it
        choice = create_model("Choice", __base__=_Choice, label=(label, ...))
        prompt = f"{instruction}\nLabels: {', '.join(labels)}\nText: {text}\nAnswer with the label."
        return (await self.json(prompt, choice, **kwargs)).label

    async def summarize(self, text: str, *, focus: str = "", **kwargs: Any) -> str:
        system = "Summarize the conversation briefly and factually. Keep names, facts, dates and feelings."
        return (await self.complete(f"{focus}\n\n{text}".strip(), system=system, **kwargs)).strip()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, from this bundle's embedding model."""
        return await self.provider.embed(self.provider_model, texts)

    async def count_tokens(self, text: str) -> int:
        return await self.provider.count_tokens(self.provider_model, text)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider.name, "model": self.provider_model, "purpose": self.spec.purpose,
                "params": self.spec.params, "description": self.spec.description}
