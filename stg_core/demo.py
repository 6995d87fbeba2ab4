"""Ready-made demos: a task set and settings that train in about a minute on a laptop CPU and
show the method's behaviour, plus what to look at on each page."""

from __future__ import annotations

from dataclasses import dataclass, field

from stg_core.config import ExperimentSpec, TrainConfig, spec_from_preset
from stg_core.data import dataset_status


@dataclass(frozen=True)
class Demo:
    """A demo run: ``spec`` to train, the ``k`` to cluster at, and a sentence per page."""

    name: str
    title: str
    button: str
    spec: ExperimentSpec
    k: int
    guide: dict[str, str] = field(default_factory=dict)


DEMOS: dict[str, Demo] = {
    "digits": Demo(
        "digits", "Digits G2 (offline, trains in seconds)", "Run the demo",
        # 40 epochs: with fewer, the flipped task's data map still looks like the random task's.
        # k = 4: Random has a cluster of its own there; at k = 3 it shares one with Downside
        # (tests/test_method_checks.py checks both on seeds 0-2).
        spec_from_preset("digits-g2", train=TrainConfig(epochs=40)), k=4,
        guide={
            "training": "Press ▶ on the data map of **Random**: its points stay in a band around confidence "
                        "0.5 (nothing to learn), while a digit task like **3** climbs to the easy top-left corner. "
                        "Compare **Round** with **Not round**: complementary labels, similar maps — but each "
                        "head starts on its own, so not the same.",
            "clustering": "At k = 4 the **Random** task sits in a cluster of its own; try k = 3: it shares one "
                          "with **Downside**, the flipped task the model learns later than the digits, and the "
                          "**Paper's claims** tab says the claim does not hold there. Whether **Round** and **Not "
                          "round** get the same memberships is earned, not built in: that tab checks it (on this demo "
                          "it holds for some training seeds, not all). Move F towards 1 to make the memberships "
                          "harder.",
            "evaluation": "Launch an evaluation at k = 4: it trains MTL, STL, and one specialised model per "
                          "cluster, and compares their mean F1 on the held-out images.",
        }),
    "fashion_mnist": Demo(
        "fashion_mnist", "Fashion-MNIST G2 (5,000 images, about a minute)", "Run the Fashion-MNIST demo",
        spec_from_preset("fashion_mnist-g2", subset=5000, test_subset=2000, train=TrainConfig(epochs=15)), k=4,
        guide={
            "training": "Watch **Random** stay ambiguous while **Trouser** becomes easy within two epochs.",
            "clustering": "Fashion-MNIST has natural groups (tops, footwear): check the alignment scores on the "
                          "**Known groups** tab and try "
                          "the **pattern** representation, which compares which images a task finds hard "
                          "rather than how hard the task is.",
            "evaluation": "Launch an evaluation at k = 4 and compare STG-MTL with MTL and STL.",
        }),
}


def available_demos() -> list[Demo]:
    """The demos whose dataset can be loaded on this machine (digits always can)."""
    return [d for d in DEMOS.values() if dataset_status(d.spec.dataset).available]
