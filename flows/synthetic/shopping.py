"""Shopping: the product catalog, web/app/miniprogram sessions with their cart, and orders
(created from a checkout or at a ``pos`` store, then paid, left unpaid or refunded).

Amounts are CNY floats with 2 decimals; ``value`` makes customers buy pricier SKUs, convert
checkouts and pay more often.
"""

from __future__ import annotations

import random
from typing import Any

from flows.synthetic.envelope import EventWriter
from flows.synthetic.profile import Profile
from flows.synthetic.vocabulary import PAGES, PAYMENT_METHODS, SEARCH_QUERIES, UTM_CHANNELS

__all__ = ["CATALOG_SIZE", "Item", "Shop"]

CATALOG_SIZE = 400
_SKUS = tuple(f"SKU-{k:05d}" for k in range(CATALOG_SIZE))  # catalog rank k, cheapest first
_STORES = 25

Item = tuple[str, float, int]  # (sku, price, quantity)


class Shop:
    """The shopping events of every profile; numbers sessions and orders."""

    __slots__ = ("_orders", "_out", "_prices", "_rnd", "_sessions")

    def __init__(self, rng: random.Random, out: EventWriter) -> None:
        self._rnd = rng.random
        self._out = out
        # the catalog's prices, ascending with the rank (drawn here, from the shared rng)
        self._prices = sorted(round(rng.lognormvariate(4.0, 0.9) + 1.0, 2) for _ in range(CATALOG_SIZE))
        self._sessions = 0
        self._orders = 0

    def _pick_item(self, value: float) -> Item:
        # pricier products for more valuable customers: catalog rank ~ U ** (2 - 1.5 value)
        k = int(self._rnd() ** (2.0 - 1.5 * value) * CATALOG_SIZE)
        if k >= CATALOG_SIZE:
            k = CATALOG_SIZE - 1
        return _SKUS[k], self._prices[k], 1 if self._rnd() < 0.8 else 2

    def session_start(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        self._sessions += 1
        p.session_id = f"s{self._sessions:09d}"
        x = rnd()
        p.session_source = "web" if x < 0.45 else ("app" if x < 0.85 else "miniprogram")
        p.session_left = 2 + int(rnd() * (4 + 16 * p.traits.engagement))
        return self._out.emit(
            p,
            ts,
            "session_start",
            p.session_source,
            {"sessionId": p.session_id, "channel": UTM_CHANNELS[int(rnd() * len(UTM_CHANNELS))], "page": "/"},
        )

    def session_step(self, p: Profile, ts: int) -> bytes:
        """The next event of the open session: a view, a search or a cart change; a
        non-empty cart may go to checkout (the profile's next action decides the order)."""
        rnd = self._rnd
        value = p.traits.value
        sid = p.session_id
        p.session_left -= 1
        cart = p.cart
        r = rnd()
        props: dict[str, Any]
        if r < 0.32:
            etype = "page_view"
            props = {"sessionId": sid, "page": PAGES[int(rnd() * len(PAGES))]}
        elif r < 0.44:
            etype = "search"
            props = {"sessionId": sid, "query": SEARCH_QUERIES[int(rnd() * len(SEARCH_QUERIES))]}
        elif r < 0.68:
            sku, price, _ = self._pick_item(value)
            etype = "product_view"
            props = {"sessionId": sid, "sku": sku, "price": price, "currency": "CNY"}
        elif r < 0.74 + 0.12 * value:
            item = self._pick_item(value)
            if len(cart) >= 10:
                cart.pop(0)
            cart.append(item)
            etype = "add_to_cart"
            props = {
                "sessionId": sid,
                "sku": item[0],
                "price": item[1],
                "qty": item[2],
                "currency": "CNY",
            }
        elif cart and r < 0.80 + 0.06 * value:
            sku, _, qty = cart.pop(int(rnd() * len(cart)))
            etype = "remove_from_cart"
            props = {"sessionId": sid, "sku": sku, "qty": qty}
        elif cart:
            etype = "checkout_started"
            p.order_stage = 1
            props = {
                "sessionId": sid,
                "amount": _cart_amount(cart),
                "items": sum(item[2] for item in cart),
                "currency": "CNY",
            }
        else:
            etype = "page_view"
            props = {"sessionId": sid, "page": PAGES[int(rnd() * len(PAGES))]}
        return self._out.emit(p, ts, etype, p.session_source, props)

    def order_step(self, p: Profile, ts: int) -> bytes | None:
        """After ``checkout_started``: the order for the cart, or None (cart abandoned);
        after ``order_created``: its payment, or None (left unpaid)."""
        value = p.traits.value
        if p.order_stage == 1:
            if self._rnd() < 0.45 + 0.45 * value:
                cart, p.cart = p.cart, []
                return self._order_created(p, ts, p.session_source, cart)
            p.order_stage = 0
        elif p.order_stage == 2:
            if self._rnd() < 0.75 + 0.2 * value:
                return self._order_paid(p, ts)
            p.order_stage = 0
        return None

    def pos_order(self, p: Profile, ts: int) -> bytes:
        """An order of one item at a store (paid or not at the profile's next action)."""
        return self._order_created(p, ts, "pos", [self._pick_item(p.traits.value)])

    def _order_created(self, p: Profile, ts: int, source: str, items: list[Item]) -> bytes:
        self._orders += 1
        p.order_id = f"o{self._orders:09d}"
        p.order_amount = _cart_amount(items)
        p.order_source = source
        p.order_stage = 2
        props: dict[str, Any] = {
            "orderId": p.order_id,
            "amount": p.order_amount,
            "currency": "CNY",
            "items": sum(item[2] for item in items),
            "skus": [item[0] for item in items],
        }
        if source == "pos":
            props["storeId"] = f"store{int(self._rnd() * _STORES):03d}"
        else:
            props["sessionId"] = p.session_id
        return self._out.emit(p, ts, "order_created", source, props)

    def _order_paid(self, p: Profile, ts: int) -> bytes:
        p.order_stage = 0
        p.last_paid_id = p.order_id
        p.last_paid_amount = p.order_amount
        method = "cash" if p.order_source == "pos" and self._rnd() < 0.3 else None
        if method is None:
            method = PAYMENT_METHODS[int(self._rnd() * len(PAYMENT_METHODS))]
        return self._out.emit(
            p,
            ts,
            "order_paid",
            p.order_source,
            {
                "orderId": p.order_id,
                "amount": p.order_amount,
                "currency": "CNY",
                "paymentMethod": method,
            },
        )

    def order_refunded(self, p: Profile, ts: int) -> bytes:
        """A refund of the profile's last paid order."""
        oid = p.last_paid_id
        p.last_paid_id = ""
        return self._out.emit(
            p,
            ts,
            "order_refunded",
            "crm",
            {
                "orderId": oid,
                "amount": p.last_paid_amount,
                "currency": "CNY",
                "reason": "quality" if self._rnd() < 0.5 else "changed_mind",
            },
        )


def _cart_amount(cart: list[Item]) -> float:
    return round(sum(price * qty for _, price, qty in cart), 2)
