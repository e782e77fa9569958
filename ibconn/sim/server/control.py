"""Drive a running gateway's fault controls from outside: a JSON-lines port on loopback.

``python -m ibconn sim --control-port 0`` prints ``CONTROL 127.0.0.1:N`` after
``LISTENING``; each line sent there is one command, each line back its answer::

    -> {"command": "fill", "args": {"order_ref": "my-ref", "quantity": 5}}
    <- {"ok": true, "result": {"exec_id": "...", ...}}
    -> {"command": "fill", "args": {"order_ref": "nope"}}
    <- {"ok": false, "error": "KeyError: no working order with orderRef 'nope'"}

:data:`COMMANDS` is the one list of commands: the server executes them, the
``ibconn sim <command> --control-port N`` subcommands are built from it, and
:func:`send_command` is the client. The port only ever listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ibconn.core.logs import get_logger
from ibconn.errors import IBConnError
from ibconn.sim.broker.records import SimExecution, SimOrder
from ibconn.sim.market.instruments import Instrument

if TYPE_CHECKING:
    from ibconn.sim.server.gateway import SimulatedGateway

__all__ = [
    "COMMANDS",
    "Command",
    "ControlCommandError",
    "ControlServer",
    "Param",
    "send_command",
]

_log = get_logger("sim")
_HOST = "127.0.0.1"
_MAX_LINE = 64 * 1024


class ControlCommandError(IBConnError):
    """A control command failed: unknown, bad arguments, or the control raised."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of a command: ``kind`` is ``int``, ``float``, ``str`` or ``bool``
    (a flag); ``required`` ones are positional on the command line."""

    name: str
    kind: type
    help: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A control command: its name, what it does and the call it makes."""

    name: str
    help: str
    run: Callable[..., Any]
    params: tuple[Param, ...] = ()

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        """Check and convert ``args`` to the command's parameters (defaults filled in)."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(args) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise ControlCommandError(
                f"{self.name}: unknown argument {unknown[0]!r} (allowed: {allowed})"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name not in args or args[p.name] is None:
                if p.required:
                    raise ControlCommandError(f"{self.name}: {p.name} is required")
                out[p.name] = p.default
                continue
            out[p.name] = _convert(self.name, p, args[p.name])
        return out


def _convert(command: str, p: Param, value: Any) -> Any:
    try:
        if p.kind is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if p.kind is int and (isinstance(value, bool) or int(value) != float(value)):
            raise TypeError
        converted = p.kind(value)
    except (TypeError, ValueError):
        raise ControlCommandError(
            f"{command}: {p.name} must be {p.kind.__name__}, not {value!r}"
        ) from None
    if p.choices is not None and converted not in p.choices:
        raise ControlCommandError(
            f"{command}: {p.name} must be one of {', '.join(p.choices)}, not {value!r}"
        )
    return converted


_CLIENT = Param("client_id", int, "one client (default: every client)")
_REF = Param("order_ref", str, "the orderRef of a working order", required=True)


def _orders(gw: SimulatedGateway) -> list[SimOrder]:
    return list(gw.orders)


def _clients(gw: SimulatedGateway) -> list[Any]:
    return list(gw.clients.values())


def _status(gw: SimulatedGateway) -> dict[str, Any]:
    return {
        "port": gw.port,
        "listening": gw.listening,
        "clients": sorted(gw.clients),
        "next_valid_id": gw.next_order_id,
        "orders": len(gw.orders),
        "executions": len(gw.executions),
        "down_farms": sorted(gw.faults.down_farms),
    }


COMMANDS: tuple[Command, ...] = (
    Command("status", "port, clients, next order id, counts", _status),
    Command("clients", "the connected API clients", _clients),
    Command("orders", "every order the broker holds", _orders),
    Command(
        "drop",
        "close one client's socket (or all) abruptly",
        lambda gw, client_id: gw.drop_connections(client_id),
        (_CLIENT,),
    ),
    Command(
        "restart",
        "stop listening, drop every client, wait, listen again (state kept)",
        lambda gw, downtime, new_port: gw.restart(downtime, new_port),
        (
            Param("downtime", float, "seconds down", 0.5),
            Param("new_port", int, "come back on this port (0: any), after error 1300"),
        ),
    ),
    Command(
        "tws-restart",
        "restart TWS: order ids rolled back, open orders' client ids forgotten",
        lambda gw, downtime, next_valid_id, keep_client_ids: gw.faults.tws_restart(
            downtime, next_valid_id, not keep_client_ids
        ),
        (
            Param("downtime", float, "seconds down", 0.5),
            Param("next_valid_id", int, "the order id announced afterwards (rolled back)"),
            Param("keep_client_ids", bool, "keep open orders' client ids", False),
        ),
    ),
    Command(
        "stall",
        "half-open link: nothing read or written",
        lambda gw, client_id: gw.stall(client_id),
        (_CLIENT,),
    ),
    Command("unstall", "end stall", lambda gw, client_id: gw.unstall(client_id), (_CLIENT,)),
    Command(
        "error",
        "send any error/notice code (TWS's text by default)",
        lambda gw, code, text, req_id, client_id: gw.send_error(code, text, req_id, client_id),
        (
            Param("code", int, "the error code", required=True),
            Param("text", str, "the text (default: TWS's)"),
            Param("req_id", int, "the request id", -1),
            _CLIENT,
        ),
    ),
    Command("pause-market", "freeze automatic price updates", lambda gw: gw.pause_market()),
    Command("resume-market", "restart automatic price updates", lambda gw: gw.resume_market()),
    Command(
        "set-price",
        "move an instrument's price now",
        lambda gw, symbol, price: gw.set_price(symbol, price),
        (Param("symbol", str, "symbol", required=True), Param("price", float, "", required=True)),
    ),
    Command(
        "fail-next",
        "answer the next request with this message id with an error",
        lambda gw, msg_id, code, text: gw.fail_next(msg_id, code, text),
        (
            Param("msg_id", int, "incoming message id", required=True),
            Param("code", int, "error code", required=True),
            Param("text", str, "error text"),
        ),
    ),
    Command(
        "drop-after-next",
        "process the next message with this id, then drop that client before any reply",
        lambda gw, msg_id, client_id: gw.drop_after_next(msg_id, client_id),
        (Param("msg_id", int, "incoming message id", required=True), _CLIENT),
    ),
    Command(
        "fill",
        "fill a working order now",
        lambda gw, order_ref, quantity, price: gw.fill(order_ref, quantity, price),
        (_REF, Param("quantity", float, "default: the rest"), Param("price", float, "price")),
    ),
    Command(
        "cancel",
        "cancel a working order from TWS (202)",
        lambda gw, order_ref: gw.cancel(order_ref),
        (_REF,),
    ),
    Command(
        "lose-order",
        "TWS forgets a working order silently (a cancel then gets 10147)",
        lambda gw, order_ref: gw.lose_order(order_ref),
        (_REF,),
    ),
    Command(
        "correct",
        "correct an execution's price (new exec id suffix)",
        lambda gw, exec_id, price: gw.correct_execution(exec_id, price),
        (Param("exec_id", str, "", required=True), Param("price", float, "", required=True)),
    ),
    Command(
        "set-position",
        "make an account hold a position",
        lambda gw, account, symbol, quantity, avg_cost: gw.set_position(
            account, symbol, quantity, avg_cost
        ),
        (
            Param("account", str, "", required=True),
            Param("symbol", str, "", required=True),
            Param("quantity", float, "", required=True),
            Param("avg_cost", float, "", required=True),
        ),
    ),
    Command(
        "nightly-reset",
        "1100, nothing delivered for a while, then 1102 (and the day rolls over)",
        lambda gw, downtime, data_lost, no_rollover: gw.faults.nightly_reset(
            downtime, data_lost, not no_rollover
        ),
        (
            Param("downtime", float, "seconds without delivery", 1.0),
            Param("data_lost", bool, "end with 1101 instead of 1102", False),
            Param("no_rollover", bool, "do not roll the trading day over", False),
        ),
    ),
    Command(
        "rollover",
        "trading-day rollover: DAY orders expire, executions roll",
        lambda gw: gw.faults.rollover(),
    ),
    Command(
        "connection-lost",
        "1100, then nothing reaches the client",
        lambda gw, client_id: gw.faults.connectivity_lost(client_id),
        (_CLIENT,),
    ),
    Command(
        "connection-restored",
        "end connection-lost with 1102 (or 1101)",
        lambda gw, data_lost, client_id: gw.faults.connectivity_restored(data_lost, client_id),
        (Param("data_lost", bool, "1101: subscriptions forgotten", False), _CLIENT),
    ),
    Command(
        "compete",
        "competing live session: 10197, market data halted",
        lambda gw, client_id: gw.faults.competing_session(client_id),
        (_CLIENT,),
    ),
    Command(
        "release",
        "end the competing session",
        lambda gw, client_id: gw.faults.release_competing_session(client_id),
        (_CLIENT,),
    ),
    Command(
        "farm-down",
        "one data farm breaks (2103, ushmds: 2105) and its data stops",
        lambda gw, farm: gw.faults.farm_down(farm),
        (Param("farm", str, "usfarm, cashfarm, usfuture, usopt, ushmds", "usfarm"),),
    ),
    Command(
        "farm-up",
        "the farm is back (2104 / 2106)",
        lambda gw, farm: gw.faults.farm_up(farm),
        (Param("farm", str, "usfarm, cashfarm, usfuture, usopt, ushmds", "usfarm"),),
    ),
    Command(
        "output",
        "delay (latency), slow (bandwidth) or split the output; no options: plain again",
        lambda gw, latency, bandwidth, split, client_id: gw.faults.set_output(
            latency, bandwidth, split, client_id
        ),
        (
            Param("latency", float, "seconds late", 0.0),
            Param("bandwidth", float, "bytes per second"),
            Param("split", bool, "split every write across two reads", False),
            _CLIENT,
        ),
    ),
    Command(
        "reject",
        "end an acknowledged order from TWS: orderStatus, then error 201",
        lambda gw, order_ref, reason, status, code: gw.faults.reject(
            order_ref, reason, status, code
        ),
        (
            _REF,
            Param("reason", str, "the reason in the 201 text", ""),
            Param(
                "status",
                str,
                "the final status",
                "Cancelled",
                choices=("Cancelled", "Inactive", "ApiCancelled"),
            ),
            Param("code", int, "the error code (0: none)", 201),
        ),
    ),
    Command(
        "cancel-race",
        "the next cancel of this order loses to a fill (10148)",
        lambda gw, order_ref: gw.faults.cancel_loses_to_fill(order_ref),
        (_REF,),
    ),
    Command(
        "modify",
        "change an order by hand in TWS (openOrder pushed)",
        lambda gw, order_ref, quantity, price: gw.faults.modify_by_hand(order_ref, quantity, price),
        (_REF, Param("quantity", float, "new total quantity"), Param("price", float, "new price")),
    ),
    Command(
        "duplicate-exec",
        "send the next execDetails twice",
        lambda gw, times: gw.faults.duplicate_next_execution(times),
        (Param("times", int, "how many", 1),),
    ),
    Command(
        "delay-commission",
        "send the next commissionReport late",
        lambda gw, seconds: gw.faults.delay_next_commission(seconds),
        (Param("seconds", float, "", required=True),),
    ),
    Command(
        "drop-commission",
        "never send the next commissionReport",
        lambda gw: gw.faults.drop_next_commission(),
    ),
    Command(
        "status-first",
        "the next fill's orderStatus before its execDetails",
        lambda gw, times: gw.faults.status_before_execution(times),
        (Param("times", int, "how many", 1),),
    ),
    Command(
        "stale-status",
        "send a stale orderStatus (Submitted, nothing filled)",
        lambda gw, order_ref: gw.faults.stale_status(order_ref),
        (_REF,),
    ),
)
"""Every control command, in the order ``ibconn sim --help`` lists them."""

_BY_NAME = {c.name: c for c in COMMANDS}


def to_json(value: Any) -> Any:
    """A JSON-ready form of a control's result (orders, executions, snapshots)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Instrument):
        return value.display_name
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, SimOrder | SimExecution) or dataclasses.is_dataclass(value):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return str(value)


async def execute(gw: SimulatedGateway, command: str, args: dict[str, Any]) -> Any:
    """Run one control command against ``gw``; raises :class:`ControlCommandError`."""
    cmd = _BY_NAME.get(command)
    if cmd is None:
        raise ControlCommandError(
            f"unknown command {command!r}; known: {', '.join(sorted(_BY_NAME))}"
        )
    bound = cmd.bind(args)
    try:
        result = cmd.run(gw, **bound)
        if inspect.isawaitable(result):
            result = await result
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ControlCommandError(f"{command}: {message}") from None
    return to_json(result)


class ControlServer:
    """The control port of one gateway (JSON lines on 127.0.0.1; ``port`` 0 = any)."""

    def __init__(self, gateway: SimulatedGateway, port: int = 0) -> None:
        self.gw = gateway
        self.host = _HOST
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen; ``port`` is the bound port afterwards."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=_MAX_LINE
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and end open control connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_answer(False, error="line too long"))
                    break
                if not line:
                    break
                if line.strip():
                    writer.write(await self._answer(line))
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                raise ControlCommandError('send {"command": NAME, "args": {...}}')
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise ControlCommandError("args must be a JSON object")
            _log.info("control: {} {}", request["command"], args)
            result = await execute(self.gw, request["command"], args)
        except json.JSONDecodeError as exc:
            return _answer(False, error=f"not JSON: {exc}")
        except ControlCommandError as exc:
            return _answer(False, error=str(exc))
        except Exception as exc:  # a failing control never stops the gateway
            _log.exception("control command failed")
            return _answer(False, error=f"{type(exc).__name__}: {exc}")
        return _answer(True, result=result)


def _answer(ok: bool, *, result: Any = None, error: str = "") -> bytes:
    body: dict[str, Any] = {"ok": ok}
    if ok:
        body["result"] = result
    else:
        body["error"] = error
    return (json.dumps(body) + "\n").encode()


async def send_command(
    port: int, command: str, args: dict[str, Any] | None = None, timeout: float = 60.0
) -> Any:
    """Send one command to the control port on 127.0.0.1 and return its result.

    Raises :class:`ControlCommandError` when the gateway answers with an error,
    ``OSError`` when nothing listens there, ``TimeoutError`` after ``timeout``.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(_HOST, port)
    try:
        payload = {"command": command, "args": args or {}}
        writer.write((json.dumps(payload) + "\n").encode())
        await writer.drain()
        async with asyncio.timeout(timeout):
            line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        raise ControlCommandError(f"{command}: the gateway closed the control connection")
    answer = json.loads(line)
    if not answer.get("ok"):
        raise ControlCommandError(str(answer.get("error")))
    return answer.get("result")
