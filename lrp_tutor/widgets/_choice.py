"""A menu that can be read from the back of a hall: one button per option.

An ``ipywidgets.Dropdown`` cannot change its font size, so a few options are shown as a row
of buttons instead (their type scales with lecture mode); the chosen one is highlighted.
:class:`Choice` behaves like a Dropdown from Python: ``.value``, ``.options``,
``.observe(handler, names="value")``, ``.disabled``. Long lists stay Dropdowns.

>>> from lrp_tutor.widgets._look import Look
>>> menu = choice(Look(1.0), ["LRP-0", "ε"], "ε")
>>> menu.buttons["LRP-0"].click()
>>> menu.value
'LRP-0'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as w
import traitlets

from ..errors import InputError
from ._look import Look

__all__ = ["Choice", "choice", "BUTTONS_MAX"]

BUTTONS_MAX = 12
"""Menus with more options than this are Dropdowns."""


def _pairs(options: Sequence[Any]) -> list[tuple[str, Any]]:
    return [o if isinstance(o, tuple) else (str(o), o) for o in options]


class Choice(w.HBox):
    """A row of buttons, one per option, exactly one of them chosen.

    Parameters
    ----------
    look : Look
        Sizes the buttons' type.
    options : sequence of value or (label, value)
    value : one of the options' values
    tooltip : str
        Shown on every button.
    """

    value = traitlets.Any()

    def __init__(self, look: Look, options: Sequence[Any], value: Any, tooltip: str = "") -> None:
        self.options = _pairs(options)
        self._values = [v for _, v in self.options]
        self.buttons: dict[str, w.Button] = {}
        children = []
        for label, option in self.options:
            width = max(48.0, 13.0 * len(label) + 24.0)
            button = look.button(label, tooltip or f"choose {label}", width=width)
            button.on_click(lambda _, option=option: setattr(self, "value", option))
            self.buttons[label] = button
            children.append(button)
        super().__init__(children, layout=w.Layout(flex_flow="row wrap"))
        self.value = value
        self._highlight()
        self.observe(lambda _: self._highlight(), names="value")

    @traitlets.validate("value")
    def _valid(self, proposal: dict[str, Any]) -> Any:
        if proposal["value"] not in self._values:
            raise traitlets.TraitError(
                f"{proposal['value']!r} is not one of the options {self._values}."
            )
        return proposal["value"]

    def _highlight(self) -> None:
        for (_, option), button in zip(self.options, self.buttons.values(), strict=True):
            button.button_style = "primary" if option == self.value else ""

    @property
    def disabled(self) -> bool:
        return all(b.disabled for b in self.buttons.values())

    @disabled.setter
    def disabled(self, value: bool) -> None:
        for button in self.buttons.values():
            button.disabled = bool(value)


def choice(look: Look, options: Sequence[Any], value: Any, tooltip: str = "") -> w.Widget:
    """A :class:`Choice` for up to :data:`BUTTONS_MAX` options, else a Dropdown."""
    pairs = _pairs(options)
    if value not in [v for _, v in pairs]:
        raise InputError(f"{value!r} is not one of {[v for _, v in pairs]}.")
    if len(pairs) <= BUTTONS_MAX:
        return Choice(look, pairs, value, tooltip)
    return w.Dropdown(options=pairs, value=value)
