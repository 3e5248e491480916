"""The core of the hexagon: routing, the order lifecycle, risk and breakers. No I/O imports."""
