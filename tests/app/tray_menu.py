#!/usr/bin/env python3
"""Where the app's tray menu is on screen, read from the accessibility tree (AT-SPI).

Prints, as JSON, every line of the app's popup menu that is showing right now: its label,
whether it can be chosen, and its rectangle in screen pixels, so tests/app/e2e.mjs clicks
the real menu item (with xdotool) where GTK drew it. Prints [] while no menu is open.

Usage: tray_menu.py [APP_NAME]   (default: sallyport-app; needs python3-gi, gir1.2-atspi-2.0)
"""
import json
import sys

import gi

gi.require_version("Atspi", "2.0")
from gi.repository import Atspi  # noqa: E402

APP = sys.argv[1] if len(sys.argv) > 1 else "sallyport-app"


def showing(node):
    return node.get_state_set().contains(Atspi.StateType.SHOWING)


def lines(menu):
    out = []
    for i in range(menu.get_child_count()):
        item = menu.get_child_at_index(i)
        if item is None or not showing(item):
            continue
        role = item.get_role()
        if role == Atspi.Role.SEPARATOR:
            continue
        box = item.get_extents(Atspi.CoordType.SCREEN)
        out.append({
            "label": item.get_name(),
            "enabled": item.get_state_set().contains(Atspi.StateType.SENSITIVE),
            "x": box.x, "y": box.y, "width": box.width, "height": box.height,
        })
    return out


def main():
    Atspi.set_timeout(3000, 10000)
    desktop = Atspi.get_desktop(0)
    for a in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(a)
        if app is None or app.get_name() != APP:
            continue
        # A popup menu is a top-level window of its own, holding one menu.
        for w in range(app.get_child_count()):
            window = app.get_child_at_index(w)
            if window is None or window.get_role() != Atspi.Role.WINDOW or not showing(window):
                continue
            for m in range(window.get_child_count()):
                menu = window.get_child_at_index(m)
                if menu is not None and menu.get_role() == Atspi.Role.MENU and showing(menu):
                    print(json.dumps(lines(menu)))
                    return
    print("[]")


main()
