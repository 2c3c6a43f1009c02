"""Checkers for the workbook's exercises: call the learner's function on fixed inputs and compare with prodlab.

Each ``check_*`` takes the learner's function, runs it on fixed, seeded inputs, and compares the result with the
package's own reference (``prodlab.data``, ``prodlab.losses``, ``prodlab.models.vae``). It prints
``"<exercise>: correct"`` or raises :class:`ExerciseFailed` whose message is a hint: a specific one when the answer
equals a known mistake (a missing 1/2, a mean where a sum belongs, a detached sample), a general one otherwise.
The empty stub of the student edition (``raise NotImplementedError()``, nbgrader's default) is no failure: the
checker prints one line, ``"<exercise>: not done yet - <what is missing>"``, and returns, so that Run All goes on
(``core.checker``, wrapped here around every ``check_*``). Every chapter with exercises uses them.

The common part is ``prodlab.exercises.core``; each chapter's checkers are in ``prodlab.exercises.chNN`` and are
gathered here, so a notebook writes ``exercises.check_gaussian_kl(my_kl)``.
"""

from prodlab.exercises.ch00 import check_class_means, check_mirror_asymmetry, check_name_colours  # noqa: F401
from prodlab.exercises.ch01 import (  # noqa: F401
    check_gaussian_kl,
    check_gradient_ratio,
    check_nonsaturating_loss,
    check_reparameterise,
)
from prodlab.exercises.ch02 import (  # noqa: F401
    check_ema_update,
    check_hinge_loss,
    check_r1_penalty,
    check_truncated_normal,
)
from prodlab.exercises.ch03 import check_broken_sample, check_free_bits, check_implied_beta, check_iwae  # noqa: F401
from prodlab.exercises.ch04 import (  # noqa: F401
    check_density_coverage,
    check_gaussian_fid,
    check_kid,
    check_precision_recall,
)
from prodlab.exercises.ch05 import check_crossover, check_height, check_slerp  # noqa: F401
from prodlab.exercises.ch06 import check_ndcg, check_reciprocal_rank, check_sharded_top_k  # noqa: F401
from prodlab.exercises.ch07 import check_heel_height, check_mix_code, check_slider_values  # noqa: F401
from prodlab.exercises.ch08 import (  # noqa: F401
    check_euler_step,
    check_flow_noising,
    check_guidance,
    check_window_velocity,
    check_x0_from_eps,
)
from prodlab.exercises.ch09 import check_channel_stats, check_value_direction  # noqa: F401
from prodlab.exercises.ch10 import check_clip_score, check_masked_attention, check_zero_shot  # noqa: F401
from prodlab.exercises.core import NOT_DONE, STUB_MESSAGE, ExerciseFailed, NotDone, checker, outcomes  # noqa: F401

# The stub prints one "not done yet" line instead of raising, in every checker (prodlab.exercises.core.checker).
for _name in [name for name in dir() if name.startswith("check_")]:
    globals()[_name] = checker(globals()[_name])
del _name
