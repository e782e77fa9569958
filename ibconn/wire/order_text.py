"""The text of a new order's placeOrder message from a template: ib_async's bytes, cheaper.

ib_async's ``Client.placeOrder`` lists about 130 fields per order and
``Client.send`` converts and joins them one by one: about 40 µs on a warm
machine, several times that on the order path of a loaded one, before the
write. Of those fields a plain order varies in eight: the order id, action,
quantity, limit and aux prices, order reference, transmit flag and parent id.

:class:`OrderTexts` keeps, per contract and order type, the text ib_async produced for the
last order **shape** seen (everything but those eight fields: the contract,
the server version, every other field of the ``Order`` with its type), with
the eight fields cut out. A new order of the same shape is the template with
its eight values converted as ``Client.send`` converts them. The template is
made by ib_async itself (``Client.placeOrder`` and ``Client.send``, on a
stand-in client that captures the text), with a unique marker in each
varying field, so every field and branch of ib_async's message is ib_async's.

An order of another shape makes a new template. What a template cannot write
(a value of a type whose conversion is not the plain one, list-valued fields
that are not empty, a combo or delta-neutral contract, a client whose
``placeOrder`` or ``send`` is not ib_async's own) returns ``None``: the caller
sends through ib_async's own ``placeOrder``. ``tests/wire/test_order_text.py``
compares the bytes of both ways over random orders, contracts and server versions.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Iterable
from typing import Any, Final

from ib_async import Contract, Order
from ib_async.client import Client
from ib_async.util import UNSET_DOUBLE, UNSET_INTEGER

__all__ = ["VARYING", "OrderTexts"]

VARYING: Final = (
    "action",
    "totalQuantity",
    "lmtPrice",
    "auxPrice",
    "orderRef",
    "transmit",
    "parentId",
)
"""The ``Order`` fields a template leaves open (besides the order id, sent on its own)."""

_varying: Final = operator.attrgetter(*VARYING)
_BLANK: Final = dict.fromkeys((*VARYING, "orderId"))  # what a template's shape leaves out
_MAX_TEMPLATES: Final = 256
_MARK: Final = "\x01ibconn-{}\x01"


def _text(value: object) -> str | None:
    """``Client.send``'s conversion of one plain field (``None``: not a plain one)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is float:
        if value == UNSET_DOUBLE:
            return ""
        return "Infinite" if value == math.inf else str(value)
    if kind is bool:
        return "1" if value else "0"
    if kind is int:
        return "" if value == UNSET_INTEGER else str(value)
    if value is None:
        return ""
    return None


def _exact(values: Iterable[Any]) -> tuple[Any, ...]:
    """``values`` as a template compares them: a float by its ``repr`` (``0.0 == -0.0``,
    but ``Client.send`` writes ``-0.0``); everything else as it is (types are compared
    on their own)."""
    return tuple(repr(v) if type(v) is float else v for v in values)


def _exact_items(fields: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A contract's fields as a template compares them (see :func:`_exact`)."""
    return tuple(zip(fields, _exact(fields.values()), strict=True))


class _Capture:
    """A stand-in ``Client`` that hands ``placeOrder``'s text back instead of sending it."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.text = ""

    def serverVersion(self) -> int:
        return self.version

    def isConnected(self) -> bool:
        return True

    def send(self, *fields: Any, makeEmpty: bool = True) -> None:
        Client.send(self, *fields, makeEmpty=makeEmpty)  # type: ignore[arg-type]

    def sendMsg(self, msg: str) -> None:
        self.text = msg


def ib_async_text(version: int, order_id: object, contract: Contract, order: Order) -> str:
    """The placeOrder text ib_async's own ``Client.placeOrder`` builds (nothing is sent)."""
    capture = _Capture(version)
    Client.placeOrder(capture, order_id, contract, order)  # type: ignore[arg-type]
    return capture.text


class _Template:
    __slots__ = (
        "contract",
        "contract_fields",
        "contract_types",
        "keys",
        "slots",
        "types",
        "values",
        "version",
    )

    def __init__(
        self,
        version: int,
        contract: Contract,
        rest: dict[str, Any],
        parts: tuple[str, ...],
    ) -> None:
        self.version = version
        self.contract = contract  # held, so that its id is never reused while cached
        self.contract_fields = _exact_items(contract.__dict__)
        self.contract_types = tuple(map(type, contract.__dict__.values()))
        self.keys = tuple(rest)
        self.values = _exact(rest.values())
        self.types = tuple(map(type, rest.values()))
        # the text between the values, with a slot for each value: parts[0], _, parts[1], ...
        self.slots: list[str | None] = [None] * (2 * len(parts) - 1)
        self.slots[0::2] = parts


def _filled(template: _Template, texts: list[str | None]) -> str:
    """The template's text with ``texts`` (none of them ``None``) in its slots."""
    out = template.slots.copy()
    out[1::2] = texts
    return "".join(out)  # type: ignore[arg-type]  # the caller ruled out None


class OrderTexts:
    """Per-contract placeOrder templates of one client (see the module docstring)."""

    __slots__ = ("_shapes", "_templates", "built", "enabled", "used")

    def __init__(self, client: Client | None = None) -> None:
        self._templates: dict[tuple[int, str], _Template] = {}
        self._shapes: dict[tuple[int, int, Hashable], _Template] = {}  # see text(shape=...)
        kind = type(client)
        self.enabled = client is None or (
            getattr(kind, "placeOrder", None) is Client.placeOrder
            and getattr(kind, "send", None) is Client.send
            and "placeOrder" not in vars(client)
            and "send" not in vars(client)
        )
        """False for a client whose ``placeOrder`` or ``send`` is not ib_async's own
        (a subclass, or a patched instance): its orders keep going through them."""
        self.built = 0
        """Templates made (a new contract or order shape)."""
        self.used = 0
        """Orders whose text came from a template."""

    def text(
        self,
        version: int,
        order_id: int,
        contract: Contract,
        order: Order,
        shape: tuple[object, ...] | None = None,
    ) -> str | None:
        """The placeOrder text of ``order`` (``None``: send through ib_async's own path).

        ``shape``: for an ``Order`` that differs from a new ``Order()`` only in the
        :data:`VARYING` fields and in fields whose values (and types) ``shape`` holds,
        the template is found by it, without comparing every field of the order (a
        template for it is made, or checked field by field, only the first time).
        As ib_async's ``placeOrder`` does, a non-VOL order's ``volatility`` is cleared.
        """
        if not self.enabled:
            return None
        if not order.orderType.startswith("VOL"):
            order.volatility = None  # type: ignore[assignment]  # what ib_async's placeOrder does
        texts = [_text(order_id), *map(_text, _varying(order))]
        if shape is not None and None not in texts:
            known = self._shapes.get((id(contract), version, _exact(shape)))
            if (
                known is not None
                and known.contract is contract
                and known.contract_fields == _exact_items(contract.__dict__)
                and known.contract_types == tuple(map(type, contract.__dict__.values()))
            ):
                self.used += 1
                return _filled(known, texts)
        if (
            None in texts
            or contract.secType == "BAG"
            or contract.deltaNeutralContract is not None
            or order.algoParams
            or order.conditions
            or order.orderComboLegs
            or order.smartComboRoutingParams
            or type(order.softDollarTier.name) is not str
            or type(order.softDollarTier.val) is not str
        ):
            return None
        rest = order.__dict__.copy()
        rest.update(_BLANK)
        values = tuple(rest.values())  # compared in order: exactly equal (_exact), same type
        key = (id(contract), order.orderType)  # a bracket's LMT and STP: one template each
        template = self._templates.get(key)
        if (
            template is None
            or template.contract is not contract
            or template.version != version
            or template.values != _exact(values)
            or template.types != tuple(map(type, values))
            or template.keys != tuple(rest)
            or template.contract_fields != _exact_items(contract.__dict__)
            or template.contract_types != tuple(map(type, contract.__dict__.values()))
        ):
            template = self._build(key, version, contract, order, rest)
            if template is None:
                return None
        if shape is not None:
            if len(self._shapes) >= _MAX_TEMPLATES:
                self._shapes.clear()
            self._shapes[id(contract), version, _exact(shape)] = template
        self.used += 1
        return _filled(template, texts)

    def _build(
        self,
        key: tuple[int, str],
        version: int,
        contract: Contract,
        order: Order,
        rest: dict[str, Any],
    ) -> _Template | None:
        """Let ib_async write ``order`` with a marker in each varying field; cut them out."""
        marked = Order.__new__(Order)
        marked.__dict__.update(order.__dict__)
        for name in VARYING:
            setattr(marked, name, _MARK.format(name))
        text = ib_async_text(version, _MARK.format("orderId"), contract, marked)
        parts: list[str] = []
        tail = text
        for name in ("orderId", *VARYING):
            head, found, tail = tail.partition(_MARK.format(name))
            if not found or _MARK.format(name) in tail:
                return None  # not exactly once, in this order: no template
            parts.append(head)
        parts.append(tail)
        if "\x01ibconn-" in "".join(parts):
            return None
        if len(self._templates) >= _MAX_TEMPLATES:
            self._templates.clear()
        template = _Template(version, contract, rest, tuple(parts))
        self._templates[key] = template
        self.built += 1
        return template
