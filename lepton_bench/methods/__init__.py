"""The methods: how the task losses of a step become parameter gradients, one module per method.

``base`` is what every method shares (the ``Weighting`` base class, ``Needs``, ``Step``, the registry);
``gradient`` the base of the methods on the per-task gradients. Each other module is one method (or
one family its paper defines together: ``imtl`` holds IMTL-G and IMTL), named after it:

* loss weightings: ``ew``, ``static``, ``uw``, ``dwa``, ``rlw``, ``gls``, ``famo``, ``gradnorm``, ``stch``,
  ``cosmos``, ``pbi``, ``go4align`` (tasks grouped by K-means), ``ldc_mtl`` (a router's weights),
  ``auto_lambda`` and ``moml`` (meta-learned on a second batch), ``forum`` (bilevel: a value-function gap
  and a QP on a second batch's task gradients);
* on the per-task gradients (most are thin wrappers of torchjd's aggregators): ``pcgrad``, ``mgda``,
  ``cagrad``, ``nash_mtl``, ``imtl``, ``aligned_mtl``, ``upgrad``, ``dualproj``, ``graddrop``, ``gradvac``,
  ``fairgrad``, ``excess_mtl``, ``con_fig`` (ConFIG), ``cr_mogm``, ``pcd`` (a primary task), ``modo`` and
  ``sdmgrad`` (two half-batches), ``db_mtl`` and ``moco`` (moving averages of the task gradients),
  ``bayesagg_mtl`` (a Bayesian posterior over each head's last layer, on the step's labels).

A new method is one file: copy the closest, register it with ``@WEIGHTINGS.register(name)``, and
import it here (a plugin's is imported by its own package).
"""

from . import (  # noqa: F401  (each module registers its method)
    aligned_mtl,
    auto_lambda,
    bayesagg_mtl,
    cagrad,
    con_fig,
    cosmos,
    cr_mogm,
    db_mtl,
    dualproj,
    dwa,
    ew,
    excess_mtl,
    fairgrad,
    famo,
    forum,
    gls,
    go4align,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    ldc_mtl,
    mgda,
    moco,
    modo,
    moml,
    nash_mtl,
    pbi,
    pcd,
    pcgrad,
    rlw,
    sdmgrad,
    static,
    stch,
    upgrad,
    uw,
)
from .base import (
    WEIGHTINGS,
    GivenStep,
    Lookahead,
    Needs,
    NoArgs,
    Step,
    Weighting,
    check_needs,
    optimizer_decay,
    resolve_args,
)
from .gradient import GradientAggregation, GradientArgs

__all__ = ["WEIGHTINGS", "GivenStep", "GradientAggregation", "GradientArgs", "Lookahead", "Needs", "NoArgs", "Step",
           "Weighting", "check_needs", "optimizer_decay", "resolve_args"]
