"""What an LLM call cost: its tokens times a maintained price table, in US dollars.

Two sources, in this order:
- a configured table (`CUGAR_LLM_PRICES`: the path of a JSON file), for negotiated prices and
  in-house models: `{"openai": {"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}}`
  (USD per million tokens, keyed by gen_ai.provider.name, then gen_ai.request.model);
- the `genai-prices` package (pydantic's maintained table of provider prices, bundled with the
  package: no network at run time), through `genai_prices.calc_price`.

A model neither knows has no price: its cost is None (never guessed), and the call is counted in
`cugar.llm.cost.unpriced` instead of `cugar.llm.cost`. Costs are rounded to
`catalogue.LLM_COST_QUANTUM_USD` (2^-30 USD) so that sums are exact in any order.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Mapping

from otel.catalogue import LLM_COST_QUANTUM_USD

PER_MTOK = 1_000_000
# gen_ai.provider.name (the conventions' well-known values) -> genai-prices' provider id.
GENAI_PRICES_PROVIDER = {
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google",
    "aws.bedrock": "aws", "azure.ai.openai": "azure", "azure.ai.inference": "azure",
    "x_ai": "x-ai", "mistral_ai": "mistral",
}


def quantize(usd: float) -> float:
    """`usd` rounded to a multiple of the cost quantum (exact sums in any order)."""
    return round(usd / LLM_COST_QUANTUM_USD) * LLM_COST_QUANTUM_USD


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / PER_MTOK


def parse_table(text: str) -> dict[tuple[str, str], Price]:
    """A configured price table (JSON, see the module docstring); raises ValueError saying what
    is wrong with it."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError("expected an object of providers")
    table: dict[tuple[str, str], Price] = {}
    for provider, models in raw.items():
        if not isinstance(models, dict):
            raise ValueError(f"provider {provider!r}: expected an object of models")
        for model, entry in models.items():
            values = []
            for key in ("input_per_mtok", "output_per_mtok"):
                value = entry.get(key) if isinstance(entry, dict) else None
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                        math.isfinite(value) and value >= 0):
                    raise ValueError(f"{provider}/{model}: {key} must be a number >= 0 (USD per "
                                     "million tokens)")
                values.append(float(value))
            table[(provider, model)] = Price(*values)
    return table


class PriceTable:
    """Cost of a call from its provider, model and tokens; None when the model has no price.

        prices = PriceTable()
        prices.cost("openai", "gpt-4o-mini", input_tokens=1200, output_tokens=300)
    """

    def __init__(self, configured: Mapping[tuple[str, str], Price] | None = None,
                 use_genai_prices: bool = True) -> None:
        self._configured = dict(configured or {})
        self._use_genai_prices = use_genai_prices
        self._unknown: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
        key = (provider, model)
        price = self._configured.get(key)
        if price is not None:
            return quantize(price.cost(input_tokens, output_tokens))
        if not self._use_genai_prices or key in self._unknown:
            return None
        usd = self._genai_prices(provider, model, input_tokens, output_tokens)
        if usd is None:
            with self._lock:
                self._unknown.add(key)
            return None
        return quantize(usd)

    @staticmethod
    def _genai_prices(provider: str, model: str, input_tokens: int,
                      output_tokens: int) -> float | None:
        from genai_prices import Usage, calc_price  # imported on first use (~0.2 s)

        try:
            result = calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens),
                                model_ref=model,
                                provider_id=GENAI_PRICES_PROVIDER.get(provider, provider))
        except LookupError:
            return None
        return float(result.total_price)
