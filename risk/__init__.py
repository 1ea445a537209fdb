"""Pure margin math and state machines for riskd.

No I/O, no sockets, no Ray, no clocks of its own: time is passed in. Every array
function takes NumPy or CuPy arrays and works in the module of its inputs
(see :mod:`risk.xp`).
"""
