"""The one priority vocabulary: "<N> - <Category>"."""

import pytest

from sysadmd.events import priority


@pytest.mark.parametrize(
    "level,text",
    [
        (0, "0 - Information"),
        (1, "1 - Information"),
        (2, "2 - Information"),
        (3, "3 - Warning"),
        (4, "4 - Warning"),
        (5, "5 - Warning"),
        (6, "6 - Critical"),
        (7, "7 - Critical"),
        (8, "8 - Critical"),
        (9, "9 - Urgent"),
        (10, "10 - Urgent"),
    ],
)
def test_every_level_has_its_category(level, text):
    assert priority.display(level) == text
    assert priority.level_of(text) == level


def test_named_levels_are_the_first_of_their_category():
    assert priority.display(priority.INFORMATION) == "0 - Information"
    assert priority.display(priority.WARNING) == "3 - Warning"
    assert priority.display(priority.CRITICAL) == "6 - Critical"
    assert priority.display(priority.URGENT) == "9 - Urgent"


@pytest.mark.parametrize("level", [-1, 11, 100])
def test_levels_outside_0_to_10_are_refused(level):
    with pytest.raises(ValueError):
        priority.display(level)


@pytest.mark.parametrize("level", ["3", 3.0, None, True])
def test_non_int_levels_are_refused(level):
    with pytest.raises(TypeError):
        priority.display(level)


@pytest.mark.parametrize("text", ["3 - Urgent", "3-Warning", "Warning", "11 - Urgent", ""])
def test_level_of_refuses_strings_that_are_not_priorities(text):
    with pytest.raises(ValueError):
        priority.level_of(text)
