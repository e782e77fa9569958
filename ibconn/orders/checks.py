"""The checks an order passes before it is sent: contract, market rule, quote, pre-trade.

:class:`OrderChecks` resolves what an order trades and validates the spec
against the contract (:func:`~ibconn.orders.validation.validate_order`: size
increment, the price increments of the market rule, the side of a trigger
price against the market). A trigger price is never sent unchecked: when no
quote is at hand a snapshot is taken from the :class:`~ibconn.orders.ports.QuoteSource`.
The :class:`~ibconn.orders.ports.PreTradeCheck` gets ready here (its
synchronous ``check`` runs right before the send, in placing and amending).
"""

from __future__ import annotations

from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.errors import InvalidInputError, MarketDataError, RequestTimeoutError
from ibconn.orders.enums import OrderAction
from ibconn.orders.ports import ContractSource, OrderLink, OrderSettings, PreTradeCheck, QuoteSource
from ibconn.orders.spec import OrderSpec
from ibconn.orders.validation import (
    MarketRules,
    PriceReference,
    needs_quote,
    quote_reference,
    validate_order,
)

__all__ = ["OrderChecks"]


class OrderChecks:
    """Resolves and validates orders before they are sent (see the module docstring)."""

    def __init__(
        self,
        link: OrderLink,
        contracts: ContractSource,
        settings: OrderSettings,
        rules: MarketRules,
    ) -> None:
        self._link = link
        self._contracts = contracts
        self._settings = settings
        self._rules = rules
        self.pre_trade: PreTradeCheck | None = None
        """The risk service, installed by the composition root."""
        self.quote_source: QuoteSource | None = None
        """The market data service's snapshot quote, installed by the composition root."""

    async def resolve(self, symbol: ContractLike) -> ResolvedContract:
        """The contract ``symbol`` names (InvalidInputError for an unknown symbol)."""
        try:
            return await self._contracts.resolve(symbol)
        except InvalidInputError as exc:
            raise InvalidInputError(f"unknown or invalid symbol: {exc}") from None

    async def check(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        quote_check: bool = True,
        snapshot: bool = True,
    ) -> OrderSpec:
        """Check ``spec`` (see :mod:`ibconn.orders.validation`). A trigger price is checked
        against the quote at hand; with ``snapshot`` one is taken when none is (and the
        order refused when none can be had): a stop is never sent unchecked."""
        rule_ids = resolved.market_rule_ids
        increments = self._rules.cached(rule_ids[0]) if rule_ids else ()
        if increments is None:
            increments = await self._rules.for_contract(resolved)
        # only a trigger price is checked against the market: no quote read for the others
        trigger = quote_check and needs_quote(spec)
        quote = self._quote(resolved) if trigger else None
        if trigger and snapshot and quote_reference(spec, quote) is None:
            quote = await self._snapshot_quote(spec, resolved)
        checked = validate_order(spec, resolved, increments, quote)
        if self.pre_trade is not None and self.pre_trade.needs_prepare(checked, resolved):
            await self.pre_trade.prepare(checked, resolved)  # fetch what check() will need
        return checked

    async def _snapshot_quote(self, spec: OrderSpec, resolved: ResolvedContract) -> PriceReference:
        """A quote to check a trigger price against, taken now; the order is refused
        (never sent unchecked) when there is none."""
        what = (
            f"the {spec.action.value} {spec.order_type.value} order for "
            f"{resolved.display_name} was not sent: its trigger price must be checked "
            "against the market (a stop on the wrong side fills at once) and"
        )
        source = self.quote_source
        if source is None:
            raise MarketDataError(f"{what} no market data service is installed")
        try:
            snap = await source(resolved.contract, timeout=self._settings.market_data_timeout)
        except RequestTimeoutError as exc:
            raise RequestTimeoutError(f"{what} no quote arrived in time ({exc})") from exc
        except MarketDataError as exc:
            raise MarketDataError(
                f"{what} TWS gave no quote ({exc})", code=exc.code, text=exc.text
            ) from exc
        quote = PriceReference(
            bid=PriceReference.clean(snap.bid), ask=PriceReference.clean(snap.ask)
        )
        if quote_reference(spec, quote) is None:
            side = "ask" if spec.action is OrderAction.BUY else "bid"
            raise MarketDataError(
                f"{what} the quote has no {side}; retry when the market quotes it",
                symbol=resolved.display_name,
            )
        return quote

    def _quote(self, resolved: ResolvedContract) -> PriceReference | None:
        """The quote ib_async holds for the contract, if market data is subscribed."""
        try:
            ticker = self._link.ib.ticker(resolved.contract)
        except Exception:
            return None
        if ticker is None:
            return None
        quote = PriceReference(
            bid=PriceReference.clean(ticker.bid),
            ask=PriceReference.clean(ticker.ask),
            last=PriceReference.clean(ticker.last),
        )
        return quote if (quote.bid or quote.ask or quote.last) else None
