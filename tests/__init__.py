import pytest

# The shared helpers assert like tests do: show the compared values when they fail.
pytest.register_assert_rewrite("tests.support")
