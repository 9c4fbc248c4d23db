"""Exercise checkers: feedback a student can act on.

Each task of the course assignments (``exercises/``) has one checker. It runs the
student's function on a few cases (random layers, negative inputs, biases, zero
denominators, batches), compares with a reference computed from the rule book
(:mod:`lrp_tutor.rules`) and reports the **first** difference: which case, which entry,
expected vs. got, and the likely mistake, found by comparing the answer with typical wrong
implementations::

    from lrp_tutor import checks
    checks.ex01_contributions(contributions)      # a green or red box in Jupyter

A checker returns a :class:`CheckResult` with ``.passed``, ``.message`` and
``assert_passed()`` (for grading). :data:`TASKS` lists every task with the name of the
function it asks for.

>>> from lrp_tutor import checks
>>> checks.ex01_contributions(lambda x, W: x[:, None] * W).passed
True
>>> list(checks.TASKS)[:3]
['01.1', '01.2', '01.3']
"""

from ._core import TASKS, CheckResult, Task
from .ex01 import ex01_contributions, ex01_messages, ex01_relevance_in
from .ex02 import ex02_absorbed, ex02_lrp_epsilon, ex02_stabilize
from .ex03 import ex03_alphabeta, ex03_split
from .ex04 import ex04_contributions, ex04_messages, ex04_receptive_field, ex04_relevance_in
from .ex05 import ex05_composite, ex05_pixel_bounds, vgg16_skeleton
from .ex06 import LinearModel, ex06_aopc, ex06_flip_order, ex06_pixel_flipping
from .ex07 import ex07_eigengap, ex07_normalize
from .ex08 import ex08_lrp_cnn, ex08_lrp_dense, ex08_lrp_mlp
from .ex09 import ex09_attention_relevance, ex09_softmax_rule, ex09_uniform_product

__all__ = [
    "CheckResult",
    "Task",
    "TASKS",
    "ex01_contributions",
    "ex01_messages",
    "ex01_relevance_in",
    "ex02_stabilize",
    "ex02_lrp_epsilon",
    "ex02_absorbed",
    "ex03_split",
    "ex03_alphabeta",
    "ex04_receptive_field",
    "ex04_contributions",
    "ex04_messages",
    "ex04_relevance_in",
    "ex05_pixel_bounds",
    "ex05_composite",
    "vgg16_skeleton",
    "ex06_flip_order",
    "ex06_pixel_flipping",
    "ex06_aopc",
    "LinearModel",
    "ex07_normalize",
    "ex07_eigengap",
    "ex08_lrp_dense",
    "ex08_lrp_mlp",
    "ex08_lrp_cnn",
    "ex09_uniform_product",
    "ex09_softmax_rule",
    "ex09_attention_relevance",
]
