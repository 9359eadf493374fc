"""kt.schedules: slanted triangular and one-cycle learning rates."""

import numpy as np
import pytest

import keras

import ktransfer as kt

# torch.optim.lr_scheduler.OneCycleLR(max_lr=1e-3, total_steps=20, pct_start=0.3,
# cycle_momentum=False), the rate of steps 0..19 (torch 2.13, printed to 6 digits).
TORCH_ONE_CYCLE = {
    "cos": [
        4e-05,
        0.000131672,
        0.000371672,
        0.000668328,
        0.000908328,
        0.001,
        0.000987464,
        0.000950485,
        0.000890916,
        0.000811746,
        0.000716943,
        0.000611262,
        0.000500002,
        0.000388742,
        0.000283061,
        0.000188258,
        0.000109088,
        4.95194e-05,
        1.254e-05,
        4e-09,
    ],
    "linear": [
        4e-05,
        0.000232,
        0.000424,
        0.000616,
        0.000808,
        0.001,
        0.000928572,
        0.000857143,
        0.000785715,
        0.000714287,
        0.000642859,
        0.00057143,
        0.000500002,
        0.000428574,
        0.000357145,
        0.000285717,
        0.000214289,
        0.000142861,
        7.14323e-05,
        4e-09,
    ],
}


def values(schedule, steps):
    return np.asarray(schedule(np.asarray(list(steps))), dtype="float64")


def test_slanted_triangular_follows_ulmfit():
    schedule = kt.schedules.SlantedTriangular(0.01, total_steps=1000, cut_fraction=0.1, ratio=32)
    assert schedule.cut == 100
    # Howard & Ruder 2018, eq. 3: lr = max * (1 + p * (ratio - 1)) / ratio.
    expected = {
        0: 0.01 / 32,
        50: 0.01 * 16.5 / 32,
        100: 0.01,
        550: 0.01 * 16.5 / 32,
        1000: 0.01 / 32,
        5000: 0.01 / 32,
    }
    np.testing.assert_allclose(values(schedule, expected), list(expected.values()), rtol=1e-6)
    rates = values(schedule, range(0, 1001))
    assert np.all(np.diff(rates[:101]) > 0) and np.all(np.diff(rates[100:]) < 0)
    # Linear on both sides: constant slope up, constant slope down.
    np.testing.assert_allclose(np.diff(rates[:101]), np.diff(rates[:101])[0], rtol=1e-3)
    np.testing.assert_allclose(np.diff(rates[100:]), np.diff(rates[100:])[0], rtol=1e-3)


def test_slanted_triangular_with_infinite_ratio_is_bert_warmup_and_decay():
    schedule = kt.schedules.SlantedTriangular(1e-4, total_steps=100, ratio=float("inf"))
    np.testing.assert_allclose(
        values(schedule, [0, 5, 10, 55, 100]), [0, 5e-5, 1e-4, 5e-5, 0], atol=1e-12
    )
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert revived.ratio == float("inf")


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_matches_pytorch(anneal):
    schedule = kt.schedules.OneCycle(1e-3, total_steps=20, anneal=anneal)
    np.testing.assert_allclose(
        values(schedule, range(20)), TORCH_ONE_CYCLE[anneal], rtol=1e-4, atol=1e-9
    )
    assert float(schedule(500)) == pytest.approx(4e-9, rel=1e-3)  # stays at the floor


# Config round trip, the same rates after it, and a schedule driving an
# optimizer through a .keras file: tests/test_contracts.py::test_schedules.


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: kt.schedules.SlantedTriangular(0, 100), "max_learning_rate"),
        (lambda: kt.schedules.SlantedTriangular(1e-3, 100.5), "total_steps"),
        (lambda: kt.schedules.SlantedTriangular(1e-3, 1), "total_steps"),
        (lambda: kt.schedules.SlantedTriangular(1e-3, 100, cut_fraction=1.0), "cut_fraction"),
        (lambda: kt.schedules.SlantedTriangular(1e-3, 100, ratio=0.5), "ratio"),
        (lambda: kt.schedules.OneCycle(1e-3, 100, anneal="exp"), "anneal"),
        (lambda: kt.schedules.OneCycle(1e-3, 3, warmup_fraction=0.1), "no room"),
    ],
)
def test_bad_arguments_name_the_problem(make, match):
    with pytest.raises(ValueError, match=match):
        make()
