"""One module per automatic differentiation framework.

Every backend module exposes the six operators of :data:`diffops.DIFF_OPS` under
those names and in that order, a flag ``AVAILABLE`` saying whether its framework
imported, and ``FRAMEWORK``, the distribution name of that framework. A backend module
imports its framework at the top, inside ``try``, and never imports another backend
module; :mod:`diffops.registry` imports a backend module only when it is first looked
up.
"""
